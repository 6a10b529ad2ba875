"""ACDC: greedy edge pruning over a threshold sweep (Conmy et al., 2023).

From the whole graph, the receivers are visited from the logits back to the first
layer, and each receiver's incoming edges from the latest sender back: an edge is
removed for good when removing it from the current circuit raises the distance to
the model by less than the threshold ``tau``. The distance is the mean KL divergence
of the two-class output (``kl``) or the absolute change of the mean logit difference
(``logit_diff``); with two classes both follow from ``m`` (the signed logit
difference of :func:`~.runs.metric`), so every run is :meth:`.runs.Runs.m`.

Edges are at component level (100 in the course architecture): each candidate removal
is one patched run over the pairs. Two things keep the sweep's cost down: a receiver
whose component no longer sends any kept edge loses its incoming edges untested (they
can change nothing), and each threshold starts from the circuit of the previous,
smaller one, so the sweep's circuits nest. An edge's *ACDC score* is the largest
``tau`` of the sweep at which it is kept (0 when it is never kept), so that the
sweep's circuits are its top edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.discovery.runs import Runs
from bracketlens.errors import BracketLensError

DISTANCES = ("kl", "logit_diff")
TAUS = (0.001, 0.003, 0.01, 0.03, 0.1)


@dataclass(frozen=True)
class Acdc:
    """The sweep's circuits (component level, ``[tau, receiver, sender]``), each one's
    faithfulness over ``rows``, and each edge's ACDC score."""

    taus: tuple[float, ...]
    kept: Bool[Tensor, "tau receiver sender"]
    faithfulness: tuple[float, ...]
    scores: Float[Tensor, "receiver sender"]

    def to_json(self) -> dict[str, object]:
        return {
            "taus": list(self.taus),
            "edges": [int(k.sum()) for k in self.kept],
            "faithfulness": [round(f, 4) for f in self.faithfulness],
        }


def distance(m_model: Float[Tensor, " row"], m: Float[Tensor, " row"], kind: str) -> float:
    """KL(model || circuit) of the two-class outputs, or |mean m - mean m_model|."""
    if kind == "logit_diff":
        return float((m.mean() - m_model.mean()).abs())
    # m is the signed logit difference: log p(label side) = logsigmoid(m)
    p, q = torch.stack([m_model, -m_model], -1), torch.stack([m, -m], -1)
    return float(
        F.kl_div(F.logsigmoid(q), F.logsigmoid(p), log_target=True, reduction="none").sum(-1).mean()
    )


def prune(
    runs: Runs,
    rows: Bool[Tensor, " row"],
    tau: float,
    kind: str = "kl",
    start: Bool[Tensor, "receiver sender"] | None = None,
) -> Bool[Tensor, "receiver sender"]:
    """The circuit ACDC keeps at threshold ``tau`` (component level), pruning from
    ``start`` (default: the whole graph)."""
    graph = runs.graph
    kept = (graph.upstream if start is None else start).clone()
    current = distance(runs.m_model[rows], runs.m(_cut(kept), rows)[0, rows], kind)
    for r in reversed(range(len(graph.receivers))):
        rec = graph.receivers[r]
        if rec.input != "logits" and not kept[:, graph.sender_of(rec)].any():
            kept[r] = False  # the component's output reaches nothing kept
            continue
        for s in reversed(range(len(graph.senders))):
            if not kept[r, s]:
                continue
            kept[r, s] = False
            trial = distance(runs.m_model[rows], runs.m(_cut(kept), rows)[0, rows], kind)
            if trial - current < tau:
                current = trial
            else:
                kept[r, s] = True
    return kept


def _cut(kept: Bool[Tensor, "receiver sender"]) -> Float[Tensor, "1 receiver sender 1"]:
    return (~kept).float()[None, :, :, None]


def acdc(
    runs: Runs,
    rows: Bool[Tensor, " row"],
    kind: str = "kl",
    taus: tuple[float, ...] = TAUS,
) -> Acdc:
    """ACDC's circuit at every ``tau`` of the sweep, on ``rows`` of ``runs``' pairs.

    Raises:
        BracketLensError: an unknown distance.
    """
    if kind not in DISTANCES:
        raise BracketLensError(f"unknown ACDC distance {kind!r}: use one of {', '.join(DISTANCES)}")
    circuits: list[Tensor] = []
    for tau in sorted(taus):
        circuits.append(prune(runs, rows, tau, kind, circuits[-1] if circuits else None))
    kept = torch.stack(circuits)
    m = runs.m(torch.stack([_cut(k)[0] for k in kept]), rows)
    f, _ = runs.faithfulness(m, rows)
    scores = torch.zeros(kept.shape[1:])
    for tau, k in zip(sorted(taus), kept, strict=True):
        scores = torch.where(k & (scores < tau), torch.full_like(scores, tau), scores)
    return Acdc(tuple(sorted(taus)), kept, tuple(float(x) for x in f), scores)
