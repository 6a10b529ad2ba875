"""Scoring circuit finders against a planted circuit: AUROC from scores and from budgets.

- :func:`auroc`: the area under the ROC curve of raw scores against a truth mask
  (the probability that a true item outranks a false one, ties counting half).
- :func:`traced_auroc`: MIB's form: each budget's circuit is one (FPR, TPR) point,
  the points joined from (0, 0) to (1, 1) by trapezoids.
- :func:`node_scores`: a component's score from edge scores, the absolute scores of
  the edges it sends or receives (as :mod:`bracketlens.discovery.optimum` ranks nodes).
- :func:`components_of`: the components a circuit's edges touch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.discovery.graph import Graph


def auroc(scores: Float[Tensor, " n"], truth: Bool[Tensor, " n"]) -> float | None:
    """P(score of a true item > score of a false one), ties half; None without both kinds."""
    pos, neg = scores[truth].double(), scores[~truth].double()
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = torch.cat([pos, neg]).argsort(stable=True)
    values = torch.cat([pos, neg])[order]
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = _mid_ranks(values)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _mid_ranks(sorted_values: Tensor) -> Tensor:
    """1-based ranks of sorted values, tied values sharing their mean rank."""
    _, inverse, counts = torch.unique_consecutive(
        sorted_values, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    return (ends - (counts.double() - 1) / 2)[inverse]


def roc_point(kept: Bool[Tensor, " n"], truth: Bool[Tensor, " n"]) -> tuple[float, float]:
    """(FPR, TPR) of one circuit."""
    tpr = float((kept & truth).sum() / truth.sum().clamp(min=1))
    fpr = float((kept & ~truth).sum() / (~truth).sum().clamp(min=1))
    return fpr, tpr


def traced_auroc(circuits: Sequence[Bool[Tensor, " n"]], truth: Bool[Tensor, " n"]) -> float:
    """The area under the (FPR, TPR) points of ``circuits``, with (0, 0) and (1, 1)."""
    points = sorted({(0.0, 0.0), (1.0, 1.0), *(roc_point(c, truth) for c in circuits)})
    xs, ys = zip(*points, strict=True)
    return float(torch.trapezoid(torch.tensor(ys), torch.tensor(xs)))


def node_scores(
    graph: Graph, scores: Float[Tensor, "receiver sender"]
) -> Float[Tensor, " component"]:
    """Each head's and MLP's score (sender order, embeddings left out): the absolute
    scores of the component-level edges it sends or receives."""
    per_edge = (scores * graph.upstream).abs()
    node = torch.zeros(len(graph.senders) - 1)
    for r, rec in enumerate(graph.receivers):
        node += per_edge[r, 1:]
        if rec.input != "logits":
            node[graph.sender_of(rec) - 1] += per_edge[r].sum()
    return node


def components_of(
    graph: Graph, kept: Bool[Tensor, "receiver sender"]
) -> Bool[Tensor, " component"]:
    """The heads and MLPs (sender order, no embeddings) that a circuit's edges touch."""
    out = kept[:, 1:].any(0).clone()
    for r, rec in enumerate(graph.receivers):
        if rec.input != "logits" and kept[r].any():
            out[graph.sender_of(rec) - 1] = True
    return out


def component_truth(graph: Graph, names: Sequence[str]) -> Bool[Tensor, " component"]:
    """The components named in ``names`` (sender order, no embeddings)."""
    return torch.tensor([s.name in names for s in graph.senders[1:]])
