"""The exact node optimum: the faithfulness of every node-induced circuit.

A node-induced circuit keeps a subset of the heads and MLPs (the embeddings and the
logits always) and every edge between kept components. Every edge out of a removed
component is patched, so its readers see its counterfactual output: the circuit's
run is the model's with the removed components' outputs replaced (node patching).

With ``k`` heads and MLPs there are ``2**k`` circuits (512 in the course
architecture). They share work, so the run is in two steps, each through the runner
(:func:`~bracketlens.interventions.runner.run_patched`):

A. A prefix tree over the layers before the last. Block ``l``'s outputs depend only
   on which components of blocks ``0..l`` are kept, so it runs once per subset of
   those, from its input under each subset of the earlier ones: its heads once per
   such input (the run stops after the attention, :class:`~.runner.Stop`), their
   outputs mixed with the counterfactual ones as each subset of the block's heads
   keeps them, and its MLP half only where the MLP is kept (the counterfactual
   output is added where it is not). The last block's heads then run at position 0
   once per subset of all the earlier components, and the run stops there.
B. The last layer's heads at position 0 depend on nothing more, so for every subset
   of the last layer's components only its MLP at position 0 runs, from the residual
   the kept and counterfactual heads' outputs sum to (:class:`~.runner.Start` at
   the MLP half).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.data.tokens import PAD
from bracketlens.discovery.runs import Runs, metric
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.runner import Start, Stop, run_patched
from bracketlens.model.layers import one_pass_norms
from bracketlens.model.names import act_name

MAX_COMPONENTS = 14  # 16,384 circuits: beyond, the optimum is not computed
TIE = 1e-6  # faithfulness closer than this is a tie (zero-weight components give exact ties)
STEP_A_BATCH = 1024  # rows a batch of step A runs (fewer, larger batches: less overhead)
STEP_B_BATCH = 4096
CHUNK_ROWS = 256  # pair rows step A holds residuals of at once, for every subset


def _subsets(n: int) -> Bool[Tensor, "subset n"]:
    """Every subset of ``n`` items as a boolean row, in binary order."""
    codes = torch.arange(2**n)
    return (codes[:, None] >> torch.arange(n)[None, :]) & 1 == 1


def _corrupt_of(runs: Runs, rows: Tensor, senders: list[int]) -> Tensor:
    """The counterfactual outputs of ``senders`` on ``rows``, ``[row, pos, sender, d]``."""
    which = torch.tensor(senders)[None, :]
    if len(runs.corrupt) == 1:  # mean ablation: one row for every string
        return runs.corrupt[:, senders].transpose(1, 2).expand(len(rows), -1, -1, -1)
    # gather only these senders' slices: indexing rows first copies every sender's
    return runs.corrupt[rows[:, None], which].transpose(1, 2)


def _into(buffer: Tensor, rows: Tensor) -> Hook:
    """A hook copying its activation into ``buffer``'s ``rows`` (trimmed to its width)."""

    def hook(act: Tensor, hook: object) -> Tensor:
        buffer[rows, : act.shape[1]] = act
        return act

    return hook


def _heads_of(runs: Runs, tokens: Tensor, resid: Tensor, layer: int) -> Tensor:
    """Each head's output of block ``layer`` on every row entering it with ``resid``
    (``[row, pos, d_model]``), ``[row, pos, head, d_model]``: the run stops after
    the attention (at position 0 alone in the last block)."""
    model, heads = runs.model, runs.graph.n_heads
    width = 1 if layer == runs.graph.n_layers - 1 else tokens.shape[1]
    out = torch.zeros(len(tokens), width, heads, model.cfg.d_model, dtype=resid.dtype)
    hook = act_name("result", layer)
    run_patched(
        model,
        tokens,
        per_batch=lambda at: [(hook, _into(out, at))],
        start=Start(layer, resid),
        stop=Stop(layer, mid=True),
        batch_size=STEP_A_BATCH,
    )
    return out


def _grow(runs: Runs, rows: Tensor, resid: Tensor, layer: int) -> Tensor:
    """The residual entering block ``layer + 1`` for every subset of the components up to
    ``layer``, from ``resid`` (``[prefix, row, pos, d_model]``, one per subset of the
    earlier ones): ``[subset, row, pos, d_model]``, subset ``local * n_prefix + prefix``,
    with the block's own components as the bits of ``local``, heads first.

    The heads run once per prefix; their outputs are mixed with the counterfactual
    ones as each local subset keeps them, and the MLP runs only where it is kept."""
    graph, model = runs.graph, runs.model
    n_prefix, width = len(resid), resid.shape[2]
    tokens = runs.pairs.clean[rows, :width].repeat(n_prefix, 1)
    heads = [i for i, s in enumerate(graph.senders) if s.layer == layer and s.kind == "head"]
    mlp = next(i for i, s in enumerate(graph.senders) if s.layer == layer and s.kind == "mlp")
    clean = _heads_of(runs, tokens, resid.flatten(0, 1), layer).view(
        *resid.shape[:3], len(heads), -1
    )
    corrupt = _corrupt_of(runs, rows, heads)[:, :width]  # the same under every prefix
    keeps = _subsets(len(heads))
    b_o = model.b_O[layer]
    # [MLP kept, heads kept, prefix, row, pos, d_model], filled in place
    out = torch.empty(2, len(keeps), *resid.shape, dtype=resid.dtype)
    mids = out[1]
    for i, keep in enumerate(keeps):
        torch.add(resid, _mixed(clean, corrupt, keep) + b_o, out=mids[i])
    kept = run_patched(
        model,
        tokens.repeat(len(keeps), 1),
        start=Start(layer, mids.flatten(0, 2), mid=True),
        stop=Stop(layer + 1),
        batch_size=STEP_A_BATCH,
    )
    corrupt_mlp = _corrupt_of(runs, rows, [mlp])[:, :width, 0]
    torch.add(mids, corrupt_mlp, out=out[0])
    mids.copy_(kept.view_as(mids))
    return out.flatten(0, 2)


def _mixed(clean: Tensor, corrupt: Tensor, keep: Tensor) -> Tensor:
    """The sum of a block's head outputs (``[..., head, d_model]``), each clean where
    ``keep`` says, counterfactual elsewhere (``corrupt`` broadcasts over the leading axes
    of ``clean``), summed head by head: no tensor of every head's choice."""
    heads = [clean[..., h, :] if keep[h] else corrupt[..., h, :] for h in range(len(keep))]
    total = heads[0].expand(*clean.shape[:-2], clean.shape[-1])
    for term in heads[1:]:
        total = total + term
    return total


@torch.no_grad()
def node_circuits_m(
    runs: Runs,
) -> tuple[Bool[Tensor, "subset component"], Float[Tensor, "subset row"]]:
    """Every node-induced circuit (components in sender order, embeddings left out) and
    ``m`` of every row with it (LayerNorms through torch's kernel: rounding alone moves
    ``m``, and components that write exact zeros still tie exactly)."""
    with one_pass_norms(runs.model):
        return _node_circuits_m(runs)


def _node_circuits_m(
    runs: Runs,
) -> tuple[Bool[Tensor, "subset component"], Float[Tensor, "subset row"]]:
    """:func:`node_circuits_m`'s steps A and B, chunk by chunk of pair rows."""
    graph, model, n = runs.graph, runs.model, len(runs.pairs)
    last = graph.n_layers - 1
    early = _subsets((graph.n_heads + 1) * last)
    dtype = model.W_E.dtype
    resid0 = torch.empty(len(early), n, model.cfg.d_model, dtype=dtype)
    heads0 = torch.empty(len(early), n, graph.n_heads, model.cfg.d_model, dtype=dtype)
    lengths = (runs.pairs.clean != PAD).sum(-1)
    # rows of similar length together: each chunk's residuals are trimmed to its longest
    for rows in torch.argsort(lengths, stable=True).split(CHUNK_ROWS):
        tokens = runs.pairs.clean[rows, : int(lengths[rows].max())]
        resid = run_patched(model, tokens, stop=Stop(0))[None]
        for layer in range(last):
            resid = _grow(runs, rows, resid, layer)
        flat = resid.flatten(0, 1)
        heads = _heads_of(runs, tokens.repeat(len(resid), 1), flat, last)
        heads0[:, rows] = heads[:, 0].view(len(resid), len(rows), graph.n_heads, -1)
        resid0[:, rows] = resid[:, :, 0]
    return _last_layer(runs, early, resid0, heads0)


def _last_layer(
    runs: Runs, early: Tensor, resid0: Tensor, heads0: Tensor
) -> tuple[Bool[Tensor, "subset component"], Float[Tensor, "subset row"]]:
    """Every circuit's ``m`` from the recorded last-block inputs: the heads' outputs at
    position 0 summed as each circuit keeps them, then the MLP half from there where
    the circuit keeps the MLP, or the unembedding of the sum with its counterfactual
    output where it does not."""
    graph, model, n = runs.graph, runs.model, len(runs.pairs)
    last, heads = graph.n_layers - 1, graph.n_heads
    late = _subsets(heads + 1)  # heads' bits, then the MLP's: index mlp * 2**heads + heads
    subsets = torch.cat([early.repeat_interleave(len(late), 0), late.repeat(len(early), 1)], dim=1)
    head_senders = [i for i, s in enumerate(graph.senders) if s.layer == last and s.kind == "head"]
    pair_all = torch.arange(n)
    corrupt_heads = _corrupt_of(runs, pair_all, head_senders)[:, 0]  # [row, head, d]
    corrupt_mlp = _corrupt_of(runs, pair_all, [len(graph.senders) - 1])[:, :1, 0]  # [row, 1, d]
    b_o = model.b_O[last].float()
    # the last block computes position 0 alone: the first token is all a run reads
    tokens = runs.pairs.clean[:, :1].repeat(len(early), 1)
    sign = runs.pairs.sign.repeat(len(early))
    m = torch.empty(len(early), 2, 2**heads, n)  # [prefix, MLP kept, heads kept, row]
    for k, keep in enumerate(_subsets(heads)):
        mid = (resid0 + _mixed(heads0, corrupt_heads, keep) + b_o).to(model.W_E.dtype)
        mid = mid.view(-1, 1, model.cfg.d_model)
        starts = (  # the heads' outputs are set; without the MLP, its output too
            Start.after(act_name("mlp_out", last), mid + corrupt_mlp.repeat(len(early), 1, 1)),
            Start.after(act_name("attn_out", last), mid),
        )
        for mlp, start in enumerate(starts):
            logits = run_patched(model, tokens, start=start, batch_size=STEP_B_BATCH)
            m[:, mlp, k] = metric(logits, sign).view(len(early), n)
    return subsets, m.view(len(subsets), n)
