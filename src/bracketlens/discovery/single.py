"""Exact single-edge patching: each edge patched alone, from the clean run.

With one edge patched, every sender runs clean, so the edge from sender ``s`` to
receiver ``r`` at position ``p`` moves ``r``'s input by ``s``'s (counterfactual -
clean) output at ``p`` and changes nothing else before ``r``'s block. The run starts
at that block from the clean residual stream, with one hook on ``r``'s split input
(:func:`~bracketlens.interventions.runner.run_patched` from a
:class:`~bracketlens.interventions.runner.Start`): the same ``m`` as patching the
edge alone through :meth:`.runs.Runs.m`, without the other edges' hooks and the
blocks before the receiver's.

An edge at a position where a string has padding changes nothing the logits read
(padding keys are masked and the logits read position 0), so those (edge, string)
runs are skipped and take the model's own ``m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.data.tokens import PAD
from bracketlens.discovery.runs import Runs, metric, sender_outputs
from bracketlens.interventions.edges import split_inputs
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.runner import Start, run_patched
from bracketlens.model.names import act_name

CHUNK_ROWS = 256  # clean rows whose sender outputs and residuals are held at once


@dataclass(frozen=True)
class _Chunk:
    """One chunk of clean rows: what every single-edge run of them reads."""

    tokens: Tensor  # [row, width], trimmed to the chunk's longest string
    lengths: Tensor  # [row]
    diff: Tensor  # [row, sender, width, d_model]: counterfactual - clean outputs
    resid: dict[str, Tensor]  # the clean residual streams runs start from
    sign: Tensor  # [row]
    m_model: Tensor  # [row]


@dataclass(frozen=True)
class _Tiled:
    """(edge, row) runs into one receiver: each run's row, sender, position (-1: every
    position), and the index of its edge among the receiver's."""

    row: Tensor
    sender: Tensor
    pos: Tensor
    edge: Tensor


def single_edge_m(
    runs: Runs,
    rows: Bool[Tensor, " row"],
    edges: Bool[Tensor, "receiver sender pos"],
    scale: float = 1.0,
) -> Float[Tensor, "receiver sender pos"]:
    """The mean ``m`` over ``rows`` with each of ``edges`` patched alone (0 elsewhere).

    A position axis 1 wide patches an edge at every position at once. ``scale`` moves
    the receiver's input by that fraction of the sender's difference (1: the patch
    itself), a point on the straight path from the clean to the patched run.
    """
    picked = rows.nonzero()[:, 0]
    total = torch.zeros(edges.shape, dtype=torch.float64)
    with split_inputs(runs.model):
        for chunk in picked.split(CHUNK_ROWS):
            total += _chunk_sums(runs, _chunk(runs, chunk), edges, scale)
    return total / len(picked) * edges


def _chunk(runs: Runs, rows: Tensor) -> _Chunk:
    model = runs.model
    tokens = runs.pairs.clean[rows]
    lengths = (tokens != PAD).sum(-1)
    tokens = tokens[:, : int(lengths.max())]
    clean = sender_outputs(model, runs.sites, tokens)
    corrupt = runs.corrupt if len(runs.corrupt) == 1 else runs.corrupt[rows]
    names = [act_name(h, i) for i in range(model.cfg.n_layers) for h in ("resid_pre", "resid_mid")]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    resid = {name: cache[name] for name in names}
    diff = corrupt[:, :, : tokens.shape[1]] - clean
    return _Chunk(tokens, lengths, diff, resid, runs.pairs.sign[rows], runs.m_model[rows])


def _chunk_sums(runs: Runs, chunk: _Chunk, edges: Tensor, scale: float) -> Tensor:
    """The sum over the chunk's rows of ``m`` with each edge patched alone."""
    sums = chunk.m_model.double().sum() * edges.double()  # padding: the model's own m
    for hook, indices, has_head in runs.sites.receivers:
        for k, r in enumerate(indices):
            if edges[r].any():
                tiled = _tile(chunk, edges[r].nonzero(), edges.shape[-1] == 1)
                change = _receiver_runs(runs, chunk, tiled, hook, r, k if has_head else None, scale)
                where = edges[r].nonzero()[tiled.edge]
                sums[r].index_put_((where[:, 0], where[:, 1]), change, accumulate=True)
    return sums


def _tile(chunk: _Chunk, where: Tensor, every: bool) -> _Tiled:
    """Every (edge, row) run of one receiver's edges (``where``: ``[edge, (sender,
    pos)]``), less those at a row's padding."""
    n = len(chunk.tokens)
    row = torch.arange(n).repeat(len(where))
    edge = torch.arange(len(where)).repeat_interleave(n)
    pos = where[edge, 1]
    if every:
        pos = torch.full_like(pos, -1)
    keep = pos < chunk.lengths[row]
    return _Tiled(row[keep], where[edge[keep], 0], pos[keep], edge[keep])


def _receiver_runs(
    runs: Runs, chunk: _Chunk, tiled: _Tiled, hook: str, r: int, head: int | None, scale: float
) -> Float[Tensor, " run"]:
    """``m`` minus the model's own of each run into receiver ``r`` (its input at ``hook``,
    one head's slice of it with ``head``)."""
    receiver, last = runs.graph.receivers[r], runs.graph.n_layers - 1
    if receiver.input in ("q", "k", "v"):  # ln1 and the attention read the change
        start_hook, layer, mid = act_name("resid_pre", receiver.layer), receiver.layer, False
    else:  # an MLP's input, or the logits' (the last block's output)
        layer = last if receiver.input == "logits" else receiver.layer
        start_hook, mid = act_name("resid_mid", layer), True
    resid = chunk.resid[start_hook]

    def per_batch(at: Tensor) -> list[tuple[str, Hook]]:
        delta = chunk.diff[tiled.row[at], tiled.sender[at]] * scale  # [run, width, d_model]
        return [(hook, _add(delta, tiled.pos[at], head))]

    def start(at: Tensor, width: int) -> Tensor:
        return resid[tiled.row[at], :width]

    logits = run_patched(
        runs.model, chunk.tokens[tiled.row], per_batch=per_batch, start=Start(layer, start, mid)
    )
    m = metric(logits, chunk.sign[tiled.row]).double()
    return m - chunk.m_model[tiled.row].double()


def _add(delta: Tensor, pos: Tensor, head: int | None) -> Hook:
    """A hook adding each run's ``delta`` at its position (every position where ``pos``
    is -1), into one head's slice of the input with ``head``."""

    def hook(act: Tensor, hook: object) -> Tensor:
        out = act.clone()  # the split inputs are expanded views of the residual
        part = out if head is None else out[:, :, head]
        one = (pos >= 0).nonzero()[:, 0]
        every = (pos < 0).nonzero()[:, 0]
        part[one, pos[one]] += delta[one, pos[one]].to(act.dtype)
        part[every] += delta[every, : act.shape[1]].to(act.dtype)
        return out

    return hook
