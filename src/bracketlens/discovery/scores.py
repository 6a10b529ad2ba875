"""Edge scores: EAP, EAP-IG (inputs and activations) and exact single-edge patching.

Each gives a signed score per position-level edge, ``[receiver, sender, pos]``: the
estimated (or, for exact patching, measured) change of the mean metric when that edge
alone is patched. EAP (Syed et al., 2023) multiplies the sender's (counterfactual -
clean) output by the gradient of ``m`` at the receiver's input on the clean run;
EAP-IG (Hanna et al., 2024) averages that gradient along a straight path from the
clean to the counterfactual run, interpolating the embeddings (``inputs``) or every
sender's output at once (``activations``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.discovery.runs import Runs, metric, sender_outputs
from bracketlens.discovery.single import single_edge_m
from bracketlens.interventions.edges import split_inputs
from bracketlens.interventions.hooks import Hook
from bracketlens.model.predict import iter_batches

METHODS = ("eap-ig", "eap-ig-activations", "eap", "exact")
IG_STEPS = 5


def _gradients(
    runs: Runs,
    rows: Tensor,
    batch: Tensor,
    override: Float[Tensor, "batch sender pos d_model"] | None,
    to_embed: bool,
    into: Float[Tensor, "batch receiver pos d_model"],
    steps: int,
) -> None:
    """Add d(sum of m)/d(each receiver's input), divided by ``steps``, to ``into``, with
    the senders' outputs ``override`` (all, or with ``to_embed`` the embeddings alone)
    where given."""
    sites = runs.sites
    deltas: list[tuple[tuple[int, ...], bool, Tensor]] = []

    def add_delta(indices: tuple[int, ...], has_head: bool) -> Hook:
        def hook(act: Tensor, hook: object) -> Tensor:
            delta = torch.zeros_like(act, requires_grad=True)
            deltas.append((indices, has_head, delta))
            return act + delta

        return hook

    def replace(s: int, head: int | None) -> Hook:
        def hook(act: Tensor, hook: object) -> Tensor:
            assert override is not None
            # the path's point as the value, the run's own gradient: later receivers
            # still depend on earlier ones
            new = override[:, s, : act.shape[1]].to(act.dtype)
            if head is None:
                return act + (new - act).detach()
            shift = torch.zeros_like(act)
            shift[:, :, head] = new - act[:, :, head].detach()
            return act + shift

        return hook

    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (name, add_delta(idx, h)) for name, idx, h in sites.receivers
    ]
    if override is not None:
        chosen = sites.senders[:1] if to_embed else sites.senders
        hooks = [(name, replace(s, head)) for s, (name, head) in enumerate(chosen)] + hooks
    with torch.enable_grad(), runs.model.hooks(fwd_hooks=hooks):
        m = metric(runs.model(batch, class_only=True)[:, 0], runs.pairs.sign[rows])
        grads = torch.autograd.grad(m.sum(), [d for _, _, d in deltas])
    for (indices, has_head, _), g in zip(deltas, grads, strict=True):
        for k, r in enumerate(indices):
            # into the running sum: no batch-sized gradient table per step
            into[:, r, : g.shape[1]] += (g[:, :, k] if has_head else g).float() / steps


def gradient_scores(
    runs: Runs, rows: Bool[Tensor, " row"], method: str, steps: int = IG_STEPS
) -> Float[Tensor, "receiver sender pos"]:
    """EAP or EAP-IG scores, averaged over ``rows``."""
    picked = rows.nonzero()[:, 0]
    clean_tokens = runs.pairs.clean[picked]
    alphas = [0.0] if method == "eap" else [(k + 0.5) / steps for k in range(steps)]
    graph = runs.graph
    total = torch.zeros(len(graph.receivers), len(graph.senders), runs.width)
    upstream = graph.upstream[:, :, None, None].float()
    # torch's LayerNorm kernel, forward and backward: a quarter less time, the scores
    # moved by rounding alone (tests/unit/test_discovery_scores.py)
    with split_inputs(runs.model, one_pass=True):
        for idx, batch in iter_batches(clean_tokens):
            rows_b = picked[idx]
            clean = sender_outputs(runs.model, runs.sites, batch)
            corrupt = runs.corrupt[:, :, : batch.shape[1]]
            corrupt = (
                corrupt.expand(len(idx), -1, -1, -1)
                if len(corrupt) == 1
                else runs.corrupt[rows_b, :, : batch.shape[1]]
            )
            diff = (corrupt - clean).float()
            grad = torch.zeros(len(idx), len(graph.receivers), batch.shape[1], clean.shape[-1])
            for a in alphas:
                # the inputs variant moves the embeddings alone: interpolate only them
                mix = slice(0, 1) if method == "eap-ig" else slice(None)
                override = None if method == "eap" else clean[:, mix] + a * diff[:, mix]
                _gradients(runs, rows_b, batch, override, method == "eap-ig", grad, len(alphas))
            scores = torch.einsum("bspd,brpd->rsp", diff, grad)
            total[:, :, : batch.shape[1]] += scores
    return total * upstream[:, :, :, 0] / len(picked)


def exact_scores(
    runs: Runs, rows: Bool[Tensor, " row"], edges: Bool[Tensor, "receiver sender pos"]
) -> Float[Tensor, "receiver sender pos"]:
    """The change of the mean metric over ``rows`` when each of ``edges`` alone is
    patched (a position axis 1 wide: the edge at every position at once)."""
    m = single_edge_m(runs, rows, edges) - runs.m_model[rows].double().mean()
    return (m * edges).float()


def edge_scores(
    runs: Runs, rows: Bool[Tensor, " row"], method: str, edges: Bool[Tensor, "receiver sender pos"]
) -> Float[Tensor, "receiver sender pos"]:
    """Scores of ``edges`` by ``method`` (one of :data:`METHODS`), 0 elsewhere."""
    if method == "exact":
        return exact_scores(runs, rows, edges)
    scores = gradient_scores(runs, rows, method)
    if edges.shape[-1] == 1:
        return scores.sum(-1, keepdim=True) * edges
    return scores * edges
