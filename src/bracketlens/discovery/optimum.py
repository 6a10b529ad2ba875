"""The exact node optimum: the faithfulness of every node-induced circuit.

A node-induced circuit keeps a subset of the heads and MLPs (the embeddings and the
logits always) and every edge between kept components. Every edge out of a removed
component is patched, so its readers see its counterfactual output: the circuit's
run is the model's with the removed components' outputs replaced (node patching).

With ``k`` heads and MLPs there are ``2**k`` circuits (512 in the course
architecture). They share work: the layers before the last depend only on which of
their own components are kept, and the last layer's heads at position 0 then depend
on nothing more. So the run is in two steps: one patched run per subset of the
earlier components, which records the last block's input and its heads' outputs at
position 0; then, for every subset of the last layer's components, only its MLP at
position 0 runs, from the residual those outputs sum to
(:class:`~bracketlens.interventions.Start` at the MLP half).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.discovery.runs import Runs, metric
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.interchange import patch_rows
from bracketlens.interventions.runner import Start, run_patched
from bracketlens.model.names import act_name

MAX_COMPONENTS = 14  # 16,384 circuits: beyond, the optimum is not computed
TIE = 1e-6  # faithfulness closer than this is a tie (zero-weight components give exact ties)
STEP_B_BATCH = 4096


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


def _node_hooks(
    runs: Runs, pair_rows: Tensor, kept: Bool[Tensor, "row component"], layers: range
) -> list[tuple[str, Hook]]:
    """Hooks replacing each row's removed components of ``layers`` by their counterfactual."""
    graph = runs.graph
    hooks: list[tuple[str, Hook]] = []
    width = runs.width
    for layer in layers:
        heads = [i for i, s in enumerate(graph.senders) if s.layer == layer and s.kind == "head"]
        source = _corrupt_of(runs, pair_rows, heads)
        for h, s in enumerate(heads):
            mask = (~kept[:, s - 1])[:, None].expand(-1, width)
            hooks.append((act_name("result", layer), patch_rows(source, mask, head=h)))
        mlp = next(i for i, s in enumerate(graph.senders) if s.layer == layer and s.kind == "mlp")
        mask = (~kept[:, mlp - 1])[:, None].expand(-1, width)
        hooks.append(
            (
                act_name("mlp_out", layer),
                patch_rows(_corrupt_of(runs, pair_rows, [mlp])[:, :, 0], mask),
            )
        )
    return hooks


@torch.no_grad()
def node_circuits_m(
    runs: Runs,
) -> tuple[Bool[Tensor, "subset component"], Float[Tensor, "subset row"]]:
    """Every node-induced circuit (components in sender order, embeddings left out) and
    ``m`` of every row with it."""
    graph, model, n = runs.graph, runs.model, len(runs.pairs)
    last = graph.n_layers - 1
    n_comp = len(graph.senders) - 1
    n_early = (graph.n_heads + 1) * last
    early = _subsets(n_early)
    resid0 = torch.empty(len(early), n, model.cfg.d_model)
    heads0 = torch.empty(len(early), n, graph.n_heads, model.cfg.d_model)

    def per_batch(at: Tensor) -> list[tuple[str, Hook]]:
        pair_rows, prefix = at % n, at // n
        kept = torch.ones(len(at), n_comp, dtype=torch.bool)
        kept[:, :n_early] = early[prefix]

        def keep_resid(act: Tensor, hook: object) -> Tensor:
            resid0[prefix, pair_rows] = act[:, 0].float()
            return act

        def keep_heads(act: Tensor, hook: object) -> Tensor:
            heads0[prefix, pair_rows] = act[:, 0].float()
            return act

        return [
            *_node_hooks(runs, pair_rows, kept, range(last)),
            (act_name("resid_pre", last), keep_resid),
            (act_name("result", last), keep_heads),
        ]

    run_patched(model, runs.pairs.clean.repeat(len(early), 1), per_batch=per_batch)
    return _last_layer(runs, early, resid0, heads0)


def _last_layer(
    runs: Runs, early: Tensor, resid0: Tensor, heads0: Tensor
) -> tuple[Bool[Tensor, "subset component"], Float[Tensor, "subset row"]]:
    """Every circuit's ``m`` from the recorded last-block inputs: the heads' outputs at
    position 0 summed as each circuit keeps them, then the MLP half from there."""
    graph, model, n = runs.graph, runs.model, len(runs.pairs)
    last = graph.n_layers - 1
    late = _subsets(graph.n_heads + 1)
    subsets = torch.cat([early.repeat_interleave(len(late), 0), late.repeat(len(early), 1)], dim=1)
    head_senders = [i for i, s in enumerate(graph.senders) if s.layer == last and s.kind == "head"]
    pair_all = torch.arange(n)
    corrupt_heads = _corrupt_of(runs, pair_all, head_senders)[:, 0]  # [row, head, d]
    corrupt_mlp = _corrupt_of(runs, pair_all, [len(graph.senders) - 1])[:, :1, 0]  # [row, 1, d]
    b_o = model.b_O[last].float()

    def resid_mid(at: Tensor, width: int) -> Tensor:
        prefix, suffix, rows = at // n // len(late), at // n % len(late), at % n
        keep = late[suffix, : graph.n_heads, None]
        heads = torch.where(keep, heads0[prefix, rows], corrupt_heads[rows])
        return (resid0[prefix, rows] + heads.sum(1) + b_o)[:, None, :].to(model.W_E.dtype)

    def per_batch(at: Tensor) -> list[tuple[str, Hook]]:
        removed = ~late[at // n % len(late), -1]
        return [(act_name("mlp_out", last), patch_rows(corrupt_mlp[at % n], removed[:, None]))]

    tokens = runs.pairs.clean.repeat(len(subsets), 1)
    start = Start.after(act_name("attn_out", last), resid_mid)  # the heads' outputs are set
    logits = run_patched(model, tokens, per_batch=per_batch, start=start, batch_size=STEP_B_BATCH)
    m = metric(logits, runs.pairs.sign.repeat(len(subsets))).view(len(subsets), n)
    return subsets, m
