"""The guards a variable's alignment must clear on the test pairs, by the 95% bound.

Every guard is measured on the test pairs (locations and dimensions were chosen
on the validation pairs), and passes only when its 95% bound clears the
threshold: the lower bound for the guards a value must reach (IIA), the upper
bound for those it must stay under (the control, the null flip rate). A guard
measured on fewer than :data:`MIN_PAIRS` pairs is *untested*, and fails.

Test pairs share strings: a rare kind of base is drawn with many sources, and a
source with many bases. Their outcomes are not independent, so every bound counts
them as fewer: it is widened by the design effect of pairs clustered by base
string and by source string (:func:`bracketlens.stats.design_effect`). Where every
pair has strings of its own, the bounds are Wilson's (shares) and the bootstrap's.

- ``iia``: the mean over pair kinds of the IIA (bootstrap interval, widened), >= 0.9;
- ``iia_<kind>``: each pair kind's IIA (Wilson interval at the effective number of
  pairs), >= 0.9;
- ``telling_iia``: IIA on the *telling* pairs, whose counterfactual label differs
  from the source's own label, >= 0.85 (>= 0.9 where the location carries the
  decision itself: a label-only model aligns there at >= 0.95);
- ``control``: on the pairs whose counterfactual label differs from the base's,
  how often a patch as strong but elsewhere gives it, <= 0.6;
- ``null_flip_rate``: how often the patch flips the prediction on pairs whose
  counterfactual label is the base's, <= 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bracketlens.algorithms.pairs import KINDS
from bracketlens.stats import Estimate, clustered_share

MIN_PAIRS = 40  # fewer test pairs than this: the guard is untested, and fails
IIA = 0.9
TELLING = 0.85
TELLING_DECISION = 0.9  # where a label-only model aligns too
DECISION = 0.95  # a label-only model's IIA at which a location carries the decision
CONTROL = 0.6
NULL_FLIPS = 0.05


@dataclass(frozen=True)
class Guard:
    """One guard of one variable: its value, the bound that must clear, on how many pairs."""

    name: str
    value: float
    bound: float  # lower 95% bound (at_least) or upper 95% bound
    threshold: float
    n: int
    at_least: bool  # True: the bound must reach the threshold; False: stay under it

    @property
    def untested(self) -> bool:
        """Measured on fewer than :data:`MIN_PAIRS` pairs."""
        return self.n < MIN_PAIRS

    @property
    def passes(self) -> bool:
        if self.untested or math.isnan(self.bound):
            return False
        return self.bound >= self.threshold if self.at_least else self.bound <= self.threshold

    @property
    def margin(self) -> float:
        """How far the bound clears the threshold (negative: it fails by that much)."""
        if self.untested:
            return float("nan")
        return self.bound - self.threshold if self.at_least else self.threshold - self.bound

    def to_json(self) -> dict[str, object]:
        return {
            "guard": self.name,
            "value": _num(self.value),
            "bound": _num(self.bound),
            "threshold": self.threshold,
            "n": self.n,
            "passes": self.passes,
            "untested": self.untested,
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def variable_guards(
    iia: Estimate,
    correct: np.ndarray,
    kind: np.ndarray,
    telling: np.ndarray,
    control_correct: np.ndarray,
    flipped: np.ndarray,
    decision_carrying: bool,
    strings: tuple[np.ndarray, np.ndarray],
) -> tuple[Guard, ...]:
    """Every guard of one variable from its test pairs (each array ``[pairs]``).

    ``iia``: the kind-mean IIA with its interval, already widened for shared strings
    (:func:`.result.pooled_estimate`). ``strings``: each pair's base and source
    string, whose shared outcomes widen every other bound.
    """
    unchanged = kind == KINDS.index("unchanged")
    base, source = strings

    def share(rows: np.ndarray, hits: np.ndarray, name: str, bar: float, at_least: bool) -> Guard:
        est = clustered_share(hits[rows], (base[rows], source[rows]))
        return Guard(name, est.value, est.low if at_least else est.high, bar, est.n,
                     at_least)  # fmt: skip

    guards = [Guard("iia", iia.value, iia.low, IIA, len(correct), True)]
    guards += [
        share(kind == k, correct, f"iia_{name}", IIA, True)
        for k, name in enumerate(KINDS)
        if (kind == k).any()
    ]
    telling_bar = TELLING_DECISION if decision_carrying else TELLING
    guards.append(share(telling, correct, "telling_iia", telling_bar, True))
    guards.append(share(~unchanged, control_correct, "control", CONTROL, False))
    guards.append(share(unchanged, flipped, "null_flip_rate", NULL_FLIPS, False))
    return tuple(guards)


def margins(guards: list[tuple[Guard, ...]]) -> dict[str, float | None]:
    """For each guard, the smallest margin over the variables (None if untested anywhere)."""
    out: dict[str, float | None] = {}
    for variable in guards:
        for g in variable:
            name = "iia_by_kind" if g.name.startswith("iia_") else g.name
            m = g.margin
            if math.isnan(m):
                out[name] = None
            elif name not in out or (out[name] is not None and m < out[name]):  # type: ignore[operator]
                out[name] = m
    return out
