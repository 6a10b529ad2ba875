"""From alignments to the verdict: each model's score and guards, the passing models,
a combined model by input group, and the closest model when nothing passes.

A model passes when each of its variables was aligned and every variable that
is not trivial clears every guard (:mod:`.guards`); trivial variables are left
out of its mean IIA and its guards. Among passing models the verdict names the
one with the highest lower bound of mean IIA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from bracketlens.algorithms.causal import CausalModel
from bracketlens.algorithms.guards import IIA, margins, variable_guards
from bracketlens.algorithms.result import (
    Alignment,
    Explanation,
    ModelScore,
    ScreenMap,
    pooled_estimate,
    split_inputs,
)
from bracketlens.data.truth import FailureGroup

if TYPE_CHECKING:
    from bracketlens.algorithms.search import Search


def conclude(
    chosen: Sequence[CausalModel],
    alignments: list[Alignment],
    screens: list[ScreenMap],
    groups: np.ndarray,
    search: Search,
    seed: int,
    n: int,
    found: frozenset[str] = frozenset(),
) -> Explanation:
    """The :class:`.Explanation` of these alignments.

    Args:
        found: the names of hand-registered models that the grammar also generates.
    """
    scores = tuple(
        s for c in chosen if (s := _score(c, alignments, seed, c.name in found)) is not None
    )
    passing = sorted((s for s in scores if s.passes), key=lambda s: -s.iia.low)
    combined = None if passing else _combined(chosen, alignments, groups, seed)
    closest = None if passing else _closest(chosen, scores, alignments)
    from bracketlens.algorithms.generate import generated_models

    counts = {}
    if search.generated != "none":
        g = generated_models()
        counts = {"rules_tried": g.n_rules, "exact": g.n_exact, "kept": g.n_kept}
    return Explanation(
        passing[0].name if passing else "none",
        scores,
        tuple(alignments),
        split_inputs(scores, groups),
        tuple(screens),
        seed,
        n,
        passing=tuple(s.name for s in passing),
        combined=combined,
        closest=closest,
        budget=budget(search),
        generated=counts,
    )


def confirmed_models(rows: Sequence[tuple[str, float, bool]], k: int) -> frozenset[str]:
    """The ``k`` models of the best validation score, from (model, score, trivial) per variable.

    A model's score is its worst non-trivial variable's (the guards fail a model on its
    worst variable); a model whose variables are all trivial is never confirmed. The
    choice is made on validation pairs alone, so the confirmed models' test pairs
    measure them without selection.
    """
    worst: dict[str, float] = {}
    for name, score, trivial in rows:
        if not trivial:
            worst[name] = min(worst.get(name, np.inf), np.nan_to_num(score, nan=-np.inf))
    ranked = sorted(worst, key=lambda name: -worst[name])
    return frozenset(ranked[:k])


def hypotheses() -> dict[str, object]:
    """What sets the verdict beside the search: the registered models, the grammar and the
    guards' thresholds (for a sweep's row-reuse hash; computing it runs nothing)."""
    from bracketlens.algorithms.causal import MODELS
    from bracketlens.algorithms.generate import MAX_ATOMS, MAX_SHORTCUTS
    from bracketlens.algorithms.grammar import (
        CANDIDATE_ATOMS,
        CHECK_ALL_UP_TO,
        CHECK_SAMPLED,
        FAMILY_POSITIONS,
    )
    from bracketlens.algorithms.guards import (
        CONTROL,
        DECISION,
        IIA,
        MIN_PAIRS,
        NULL_FLIPS,
        TELLING,
        TELLING_DECISION,
    )

    return {
        "registered": sorted(MODELS),
        "grammar": {
            "atoms": [a.name for a in CANDIDATE_ATOMS],
            "max_atoms": MAX_ATOMS,
            "max_shortcuts": MAX_SHORTCUTS,
            "family_positions": FAMILY_POSITIONS,
            "check": [CHECK_ALL_UP_TO, CHECK_SAMPLED],
        },
        "guards": [MIN_PAIRS, IIA, TELLING, TELLING_DECISION, DECISION, CONTROL, NULL_FLIPS],
    }


def budget(search: Search) -> dict[str, object]:
    """The search's settings as JSON; a restricted search says so."""
    functions = ("sites", "positions")
    out = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in asdict(search).items()
        if k not in functions
    }
    out["restricted"] = any(getattr(search, f) is not None for f in functions)
    return out


def _score(
    causal: CausalModel, alignments: list[Alignment], seed: int, found: bool
) -> ModelScore | None:
    """Mean over the model's non-trivial variables of their IIA; guards; coverage by group."""
    mine = [a for a in alignments if a.model == causal.name]
    if not mine:
        return None
    kept = [a for a in mine if not a.trivial] or mine
    coverage: dict[str, float | None] = {}
    for group in FailureGroup:
        seen = [a.coverage[group.label] for a in kept if a.coverage[group.label] is not None]
        coverage[group.label] = float(np.mean(seen)) if seen else None  # type: ignore[arg-type]
    telling = [a.telling_iia for a in kept if a.telling_iia is not None]
    complete = len(mine) == len(causal.intervened)
    return ModelScore(
        causal.name,
        causal.description,
        pooled_estimate([a.outcomes() for a in kept], seed),
        coverage,
        tuple(a.variable for a in mine),
        passes=complete and all(a.passes for a in kept) and not all(a.trivial for a in mine),
        generated=causal.generated or found,
        rule=causal.rule_text,
        telling_iia=float(np.mean(telling)) if telling else None,
        margin=margins([a.guards for a in kept]),
        trivial=tuple(a.variable for a in mine if a.trivial),
    )


def _failing(a: Alignment) -> list[dict[str, object]]:
    """Each guard ``a`` fails: its value and threshold, and the pair kinds and base
    groups where the IIA is short of the threshold."""
    low_kinds = [k for k, v in a.iia_by_kind.items() if v is not None and v < IIA]
    low_groups = [g for g, v in a.coverage.items() if v is not None and v < IIA]
    out: list[dict[str, object]] = []
    for g in a.guards:
        if g.passes:
            continue
        kinds = {
            "control": ["to_unbalanced", "to_balanced"],
            "null_flip_rate": ["unchanged"],
        }.get(g.name, [g.name.removeprefix("iia_")] if g.name.startswith("iia_") else low_kinds)
        out.append({
            "variable": a.variable,
            "guard": g.name,
            "value": None if g.untested else g.value,
            "bound": None if g.untested else g.bound,
            "threshold": g.threshold,
            "n": g.n,
            "kinds": kinds,
            "groups": low_groups if g.name.startswith(("iia", "telling")) else [],
            "location": a.location.label,
        })  # fmt: skip
    return out


def _closest(
    chosen: Sequence[CausalModel], scores: tuple[ModelScore, ...], alignments: list[Alignment]
) -> dict[str, object] | None:
    """The model with the fewest failing guards, then the smallest :func:`shortfall`, then
    the highest lower bound of mean IIA."""
    if not scores:
        return None
    failing = {}
    for s in scores:
        mine = [a for a in alignments if a.model == s.name and a.variable not in s.trivial]
        failing[s.name] = [f for a in mine for f in _failing(a)]
        missing = {v.name for c in chosen if c.name == s.name for v in c.intervened}
        failing[s.name] += [
            {"variable": v, "guard": "pairs", "value": None, "threshold": None, "n": 0,
             "kinds": [], "groups": [], "location": None}
            for v in sorted(missing - set(s.variables))
        ]  # fmt: skip
    best = min(scores, key=lambda s: (len(failing[s.name]), shortfall(s), -s.iia.low))
    return {"model": best.name, "failing": failing[best.name]}


def shortfall(score: ModelScore) -> float:
    """How far the model's worst guard misses its bar (0 or less: every guard clears;
    infinite where a guard is untested or a variable was never aligned)."""
    margins = list(score.margin.values())
    if not margins or any(m is None for m in margins):
        return float("inf")
    return -min(m for m in margins if m is not None)


def _combined(
    chosen: Sequence[CausalModel], alignments: list[Alignment], groups: np.ndarray, seed: int
) -> dict[str, object] | None:
    """A passing model for each base failure group where one passes within the group
    (the same guards on that group's test pairs, at least 40 each); None if no group has one.

    Within a group the overall IIA guard is the kind-mean IIA of the group's pairs.
    """
    assignment: dict[str, str] = {}
    for group in FailureGroup:
        best: tuple[float, str] | None = None
        for causal in chosen:
            every = [a for a in alignments if a.model == causal.name]
            mine = [a for a in every if not a.trivial]
            if not mine or len(every) < len(causal.intervened):
                continue
            lows = [_within(a, int(group), seed) for a in mine]
            if all(low is not None for low in lows):
                low = min(lows)  # type: ignore[type-var]
                if best is None or low > best[0]:  # type: ignore[operator]
                    best = (low, causal.name)  # type: ignore[assignment]
        if best is not None:
            assignment[group.label] = best[1]
    if not assignment:
        return None
    share = float(np.isin(groups, [int(FailureGroup.from_label(g)) for g in assignment]).mean())
    return {"assignment": assignment, "coverage": share}


def _within(a: Alignment, group: int, seed: int) -> float | None:
    """The lower bound of ``a``'s IIA on one base group's test pairs if every guard
    passes there, else None."""
    rows = a.group == group
    if not rows.any():
        return None
    pairs = a.outcomes(rows)
    iia = pooled_estimate([pairs], seed)
    guards = variable_guards(iia, pairs.correct, pairs.kind, a.telling[rows],
                             a.control_correct[rows], a.flipped[rows],
                             a.decision_carrying, (pairs.base, pairs.source))  # fmt: skip
    if not all(g.passes for g in guards):
        return None
    return iia.low
