"""Circuit discovery without a template: score edges, keep the top ones, measure f.

:func:`discover` scores every edge with a method (:mod:`.scores`) on one half of the
pairs, takes circuits of the top edges by absolute score at a series of budgets,
measures their faithfulness (MIB's definition, m averaged over pairs before the
ratio), reports the smallest budget whose f reaches 0.95 on that half, and scores
that circuit on the other half. Beside it, the exact node optimum (:mod:`.optimum`)
and the method's gap to it.

On a machine with a second core the work runs in two processes
(:mod:`bracketlens.beside`): the node optimum, which needs no scores, in a child
while the edges are scored here, and the patched runs at the budgets with their rows
in two shares (:mod:`.shares`). The numbers are those of one process.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.beside import Beside
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import PAD
from bracketlens.discovery.optimum import MAX_COMPONENTS, TIE, node_circuits_m
from bracketlens.discovery.pairs import EDITS, halves, make_pairs
from bracketlens.discovery.result import Budget, Circuit, Discovery, EdgeRow, Optimum, SizeRow
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.scores import METHODS, edge_scores
from bracketlens.discovery.shares import m_in_two
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer

LEVELS = ("component", "position")
FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # MIB's, up to 50%
TARGET = 0.95
MIN_SPAN = 0.1  # m(model) - m(empty) below this (logits): f is not defined
NO_CIRCUIT = f"no budget up to 50% of the edges reaches f >= {TARGET} on the half it is chosen on"


def _edges(runs: Runs, level: str) -> Bool[Tensor, "receiver sender pos"]:
    """The edges circuits are made of: every component-level edge, or the live
    position-level ones (on a path to the logits at position 0, at a real position)."""
    if level == "component":
        return runs.graph.upstream[:, :, None]
    real = (runs.pairs.clean != PAD).any(0)
    return runs.graph.live(real)


def _budgets(n_edges: int, level: str) -> list[tuple[float, int]]:
    if level == "component":
        return [(k / n_edges, k) for k in range(n_edges + 1)]
    return [(f, max(1, round(f * n_edges))) for f in FRACTIONS]


def _cuts(
    order: Tensor, edges: Tensor, counts: list[int]
) -> Float[Tensor, "circuit receiver sender pos"]:
    """One cut per budget: 1 everywhere but the top ``count`` edges of ``order``."""
    where = edges.nonzero()
    cut = torch.ones(len(counts), *edges.shape)
    for i, k in enumerate(counts):
        top = where[order[:k]]
        cut[i, top[:, 0], top[:, 1], top[:, 2]] = 0.0
    return cut


def _area(x: list[float], y: list[float]) -> float:
    """The trapezoid area under ``y`` over ``x``, divided by the span of ``x``."""
    xs, ys = torch.tensor(x), torch.tensor(y)
    return float(torch.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def discover(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    method: str = "eap-ig",
    level: str = "position",
    ablation: str = "counterfactual",
    seed: int = 0,
    optimum: bool = True,
) -> Discovery:
    """Find the circuit of ``model`` on pairs built from ``data``'s balanced strings.

    Raises:
        BracketLensError: an unknown method, level or ablation, or too few pairs.
    """
    if method not in METHODS:
        raise BracketLensError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if level not in LEVELS:
        raise BracketLensError(f"unknown level {level!r}: use component or position")
    pairs = make_pairs(data, seed)
    runs = Runs.build(model, pairs, ablation, seed)
    chosen, scored = halves(pairs, seed)
    edges = _edges(runs, level)
    budgets = _budgets(int(edges.sum()), level)
    span = float(runs.m_model.mean() - runs.m_empty.mean())
    reason = _null_reason(span)
    split = {"seed": seed, "chosen_on": int(chosen.sum()) // 2, "scored_on": int(scored.sum()) // 2}
    common = dict(method=method, level=level, ablation=ablation, n_pairs=pairs.n_pairs)
    common |= dict(n_dropped=pairs.n_dropped, split=split, n_live_edges=int(edges.sum()))
    if reason is not None:  # nothing to rank edges by: no scores are computed
        rows = [Budget(fr, k, None) for fr, k in budgets]
        return Discovery(**common, budgets=rows, cpr=None, cmd=None, circuit=None,  # type: ignore[arg-type]
                         circuit_reason=reason, faithfulness_reason=reason, optimum=None,
                         by_edit={}, span=span)  # fmt: skip
    # the node optimum needs no scores: it runs in a child (where one can) meanwhile
    nodes = _node_run(runs) if optimum else None
    with nodes if nodes is not None else nullcontext():
        scores = edge_scores(runs, chosen, method, edges)
        order = torch.argsort(scores[edges].abs(), descending=True, stable=True)
        m = m_in_two(runs, _cuts(order, edges, [k for _, k in budgets]))
        f_all, f_chosen, f_scored = (runs.faithfulness(m, r)[0] for r in (None, chosen, scored))
        rows = [Budget(fr, k, float(f)) for (fr, k), f in zip(budgets, f_all, strict=True)]
        x, curve = [b.fraction for b in rows], f_all.tolist()
        pick = [i for i, (fr, _) in enumerate(budgets) if fr <= 0.5 and f_chosen[i] >= TARGET]
        circuit = None
        if pick:
            top = order[: budgets[pick[0]][1]]
            held = (float(f_chosen[pick[0]]), float(f_scored[pick[0]]))
            circuit = _circuit(runs, scores, edges, top, level, *held)
        node_m = None if nodes is None else nodes.result()
    return Discovery(
        **common,  # type: ignore[arg-type]
        budgets=rows,
        cpr=_area(x, curve),
        cmd=_area(x, [abs(1 - f) for f in curve]),
        circuit=circuit,
        circuit_reason=None if circuit else NO_CIRCUIT,
        faithfulness_reason=None,
        optimum=None if node_m is None else _optimum(runs, scores, edges, *node_m),
        by_edit={e: runs.faithfulness(m, pairs.edit == k)[0].tolist() for k, e in enumerate(EDITS)},
        span=span,
    )


def _node_run(runs: Runs) -> Beside[tuple[Tensor, Tensor]] | None:
    """The node optimum's runs, started beside this process; None where the model has
    too many components for it."""
    if len(runs.graph.senders) - 1 > MAX_COMPONENTS:
        return None
    return Beside(node_circuits_m, runs, device=str(runs.model.W_E.device))


def _null_reason(span: float) -> str | None:
    if span < MIN_SPAN:
        return (
            f"m(model) - m(empty) is {span:.3g} logits, below {MIN_SPAN}: the model does not "
            "separate the pairs, so no circuit's share of it means anything"
        )
    return None


def _circuit(
    runs: Runs, scores: Tensor, edges: Tensor, top: Tensor, level: str, f: float, held_out: float
) -> Circuit:
    where = edges.nonzero()[top]
    graph = runs.graph
    rows = []
    names: set[str] = set()
    for r, s, p in where.tolist():
        rec, snd = graph.receivers[r], graph.senders[s]
        rows.append(
            EdgeRow(
                snd.name,
                rec.name,
                rec.input,
                None if level == "component" else p,
                float(scores[r, s, p]),
            )
        )
        names |= {snd.name, rec.name}
    return Circuit(tuple(rows), tuple(sorted(names, key=_component_order)), len(rows), f, held_out)


def _component_order(name: str) -> tuple[int, int]:
    if name == "embed":
        return (-1, 0)
    if name == "logits":
        return (10**6, 0)
    if name.startswith("mlp"):
        return (int(name[3:]), 10**3)
    layer, head = name.split(".")
    return (int(layer), int(head))


def _optimum(
    runs: Runs, scores: Tensor, edges: Tensor, subsets: Tensor, m: Tensor
) -> Optimum | None:
    graph = runs.graph
    comps = [s.name for s in graph.senders[1:]]
    f, span = runs.faithfulness(m)
    if _null_reason(span):
        return None
    sizes = subsets.sum(1)
    # a component's node score: the absolute scores of the edges it sends or receives
    per_edge = (scores * edges).abs().sum(-1)
    node = torch.zeros(len(comps))
    for r, rec in enumerate(graph.receivers):
        for s in range(len(graph.senders)):
            if s > 0:
                node[s - 1] += per_edge[r, s]
            if rec.input != "logits":
                node[graph.sender_of(rec) - 1] += per_edge[r, s]
    ranking = torch.argsort(node, descending=True, stable=True)
    by_size = []
    for k in range(len(comps) + 1):
        at = (sizes == k).nonzero()[:, 0]
        best = at[f[at].argmax()]
        mine = torch.zeros(len(comps), dtype=torch.bool)
        mine[ranking[:k]] = True
        index = int((subsets == mine).all(1).nonzero()[0, 0])
        by_size.append(
            SizeRow(
                k,
                _names(comps, subsets[best]),
                float(f[best]),
                _names(comps, mine),
                float(f[index]),
            )
        )
    top = max(r.faithfulness for r in by_size)
    best_row = next(r for r in by_size if r.faithfulness >= top - TIE)
    at_095 = next((r for r in by_size if r.faithfulness >= TARGET), None)
    return Optimum(
        tuple(by_size),
        best_row.components,
        best_row.faithfulness,
        None if at_095 is None else at_095.components,
    )


def _names(comps: list[str], kept: Tensor) -> tuple[str, ...]:
    return tuple(c for c, k in zip(comps, kept.tolist(), strict=True) if k)
