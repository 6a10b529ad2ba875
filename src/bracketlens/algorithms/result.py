"""What :func:`~bracketlens.algorithms.explain` found: alignments, model scores, the verdict."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from bracketlens.algorithms.guards import Guard
from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.pairs import KINDS
from bracketlens.algorithms.probes import ProbeMap
from bracketlens.data.truth import FailureGroup
from bracketlens.stats import Estimate, bootstrap, design_effect

THRESHOLD = 0.9  # mean IIA a causal model needs to be the verdict


def kind_mean(correct: np.ndarray, kind: np.ndarray) -> float:
    """Mean over the pair kinds present of each kind's IIA (NaN without pairs)."""
    means = [correct[kind == k].mean() for k in range(len(KINDS)) if (kind == k).any()]
    return float(np.mean(means)) if means else float("nan")


def by_kind(correct: np.ndarray, kind: np.ndarray) -> dict[str, float | None]:
    """IIA of each pair kind; None for a kind without pairs."""
    return {
        name: (float(correct[kind == k].mean()) if (kind == k).any() else None)
        for k, name in enumerate(KINDS)
    }


def pooled_estimate(parts: list[PairOutcomes], seed: int) -> Estimate:
    """Mean over variables of their kind-mean IIA, with a bootstrap interval over test
    pairs, widened for pairs that share strings.

    ``parts`` holds each variable's test pairs. Pairs are resampled together; each
    resample recomputes every variable's per-kind IIA. The interval is then widened
    about the estimate by the square root of the :func:`.stats.design_effect` of
    pairs clustered by base and by source string: a pair of variable v and kind k
    contributes ``(correct - IIA_vk) / (n_vk K_v V)`` to the mean (K_v kinds, V
    variables). With every pair's strings its own, it is the bootstrap's interval.
    """
    cells = len(parts) * len(KINDS)
    n = sum(len(p.correct) for p in parts)
    values = np.zeros((n, 2 * cells))
    influence = np.zeros(n)
    row = 0
    for v, part in enumerate(parts):
        correct, kind = part.correct, part.kind
        rows = np.arange(row, row + len(correct))
        values[rows, v * len(KINDS) + kind] = correct
        values[rows, cells + v * len(KINDS) + kind] = 1.0
        present = np.unique(kind)
        for k in present:
            of_kind = kind == k
            hits = correct[of_kind]
            influence[rows[of_kind]] = (hits - hits.mean()) / (
                len(hits) * len(present) * len(parts)
            )
        row += len(correct)

    def statistic(means: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ratio = (means[:, :cells] / means[:, cells:]).reshape(len(means), len(parts),
                                                                  len(KINDS))  # fmt: skip
            return np.nanmean(np.nanmean(ratio, axis=2), axis=1)

    est = bootstrap(values, statistic, seed=seed)
    if n == 0:
        return est
    strings = [np.concatenate([p.base for p in parts]), np.concatenate([p.source for p in parts])]
    widen = math.sqrt(design_effect(influence, strings))
    low = max(0.0, est.value - (est.value - est.low) * widen)
    return Estimate(est.value, low, min(1.0, est.value + (est.high - est.value) * widen), est.n)


@dataclass(frozen=True)
class PairOutcomes:
    """One variable's test pairs as :func:`pooled_estimate` needs them (each ``[pairs]``)."""

    correct: np.ndarray
    kind: np.ndarray
    base: np.ndarray  # the pair's base string
    source: np.ndarray  # the pair's source string


@dataclass(frozen=True)
class Alignment:
    """The best location of one variable of one causal model, scored on the test pairs."""

    model: str
    variable: str
    location: Location
    dim: int  # 0: whole-vector patch
    basis: Tensor | None  # [d, dim] orthonormal columns, saved so the claim can be replayed
    iia: Estimate
    iia_by_kind: dict[str, float | None]
    control_iia: float
    control_by_kind: dict[str, float | None]
    null_flip_rate: float | None
    coverage: dict[str, float | None]  # kind-mean IIA by the base's failure group
    validation_iia: float
    n_pairs: dict[str, int]
    correct: np.ndarray = field(repr=False)  # per test pair
    kind: np.ndarray = field(repr=False)
    telling: np.ndarray = field(repr=False)  # per test pair: its label is not the source's
    group: np.ndarray = field(repr=False)  # per test pair: the base's failure group
    control_correct: np.ndarray = field(repr=False)  # per test pair: the control gave the label
    flipped: np.ndarray = field(repr=False)  # per test pair: the patch flipped the prediction
    base: np.ndarray = field(repr=False)  # per test pair: its base string
    source: np.ndarray = field(repr=False)  # per test pair: its source string
    control_kind: str = "random subspace"  # how the control patch was drawn
    trivial: bool = False  # the variable is the input token where it aligns
    label_iia_here: float | None = None  # a label-only model's IIA with this patch
    decision_carrying: bool = False  # label_iia_here >= guards.DECISION
    guards: tuple[Guard, ...] = ()
    # every tested location where the variable passes, in forward order (this one first:
    # explain names the earliest, :mod:`.earliest`); empty where it passes nowhere
    passing_at: tuple[Location, ...] = ()
    chosen_at: Location | None = None  # the patch of the best validation score

    @property
    def telling_iia(self) -> float | None:
        """IIA on the test pairs whose counterfactual label differs from the source's."""
        return float(self.correct[self.telling].mean()) if self.telling.any() else None

    def outcomes(self, rows: np.ndarray | None = None) -> PairOutcomes:
        """The test pairs (those at ``rows``) as :func:`pooled_estimate` takes them."""
        every = slice(None) if rows is None else rows
        return PairOutcomes(self.correct[every], self.kind[every], self.base[every],
                            self.source[every])  # fmt: skip

    @property
    def passes(self) -> bool:
        """Every guard clears (a trivial variable passes none: it is left out instead)."""
        return not self.trivial and all(g.passes for g in self.guards)

    def to_json(self) -> dict[str, object]:
        return {
            "telling_iia": self.telling_iia,
            "n_telling_pairs": int(self.telling.sum()),
            "trivial": self.trivial,
            "decision_carrying": self.decision_carrying,
            "label_iia_here": self.label_iia_here,
            "untested": [g.name for g in self.guards if g.untested],
            "control_kind": self.control_kind,
            "passes": self.passes,
            "guards": [g.to_json() for g in self.guards],
            "name": self.variable,
            "model": self.model,
            "hook": self.location.site.hook,
            "head": self.location.site.head,
            "positions": list(self.location.positions),
            "position": self.location.positions[0],
            "dim": self.dim,
            "iia": self.iia.value,
            "iia_ci": [self.iia.low, self.iia.high],
            "iia_by_kind": self.iia_by_kind,
            "control_iia": self.control_iia,
            "control_iia_by_kind": self.control_by_kind,
            "null_flip_rate": self.null_flip_rate,
            "coverage": self.coverage,
            "validation_iia": self.validation_iia,
            "n_test_pairs": self.n_pairs,
            "location": self.location.label,
            "basis": None if self.basis is None else self.basis.tolist(),
            "passing_at": [_where(loc) for loc in self.passing_at],
            "chosen_location": None if self.chosen_at is None else self.chosen_at.label,
        }


def _where(loc: Location) -> dict[str, object]:
    return {"location": loc.label, "hook": loc.site.hook, "head": loc.site.head,
            "positions": list(loc.positions)}  # fmt: skip


@dataclass(frozen=True)
class ModelScore:
    """A causal model: the mean of its variables' best IIA, and how it covers each group."""

    name: str
    description: str
    iia: Estimate
    coverage: dict[str, float | None]
    variables: tuple[str, ...]
    passes: bool = False
    generated: bool = False
    rule: str = ""
    telling_iia: float | None = None
    margin: dict[str, float | None] = field(default_factory=dict)
    trivial: tuple[str, ...] = ()  # variables left out of the mean and the guards

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "iia": self.iia.value,
            "iia_ci": [self.iia.low, self.iia.high],
            "coverage": self.coverage,
            "variables": list(self.variables),
            "passes": self.passes,
            "generated": self.generated,
            "rule": self.rule,
            "telling_iia": self.telling_iia,
            "margin": self.margin,
            "trivial_variables": list(self.trivial),
        }


@dataclass(frozen=True)
class ScreenMap:
    """Whole-vector IIA by kind at every screened location (validation pairs) of one variable."""

    model: str
    variable: str
    sites: tuple[str, ...]  # site labels, forward order
    layers: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]
    iia: np.ndarray  # [sites, positions, kinds]; NaN where a kind has no pairs
    site_objects: tuple[Site, ...] = field(default=(), repr=False)
    telling: np.ndarray | None = field(default=None, repr=False)  # [sites, positions]

    def to_json(self) -> dict[str, object]:
        rounded = np.round(self.iia, 3)
        return {
            "model": self.model,
            "variable": self.variable,
            "sites": list(self.sites),
            "positions": [list(p) if len(p) <= 2 else [p[0], p[-1]] for p in self.positions],
            "iia_by_kind": {
                k: [[None if np.isnan(x) else float(x) for x in row] for row in rounded[:, :, i]]
                for i, k in enumerate(KINDS)
            },
        }


@dataclass(frozen=True)
class Explanation:
    """Which causal models the network runs, where each variable lives, and how sure we are."""

    best_model: str  # among the passing models, the highest lower bound of IIA; else "none"
    models: tuple[ModelScore, ...]
    variables: tuple[Alignment, ...]
    split: tuple[dict[str, object], ...]
    screens: tuple[ScreenMap, ...]
    seed: int
    n: int
    passing: tuple[str, ...] = ()
    combined: dict[str, object] | None = None
    closest: dict[str, object] | None = None
    budget: dict[str, object] = field(default_factory=dict)
    generated: dict[str, int] = field(default_factory=dict)  # the generator's counts
    probes: ProbeMap | None = None  # what each single-position site linearly decodes
    stored_at: str | None = None  # the file it was read from (:mod:`.store`); None: computed

    @property
    def verdict(self) -> str:
        """One plain sentence (:func:`.words.verdict`)."""
        from bracketlens.algorithms.words import verdict

        return verdict(self)

    def to_json(self) -> dict[str, object]:
        return {
            "best_model": self.best_model,
            "verdict": self.verdict,
            "passing": list(self.passing),
            "combined": self.combined,
            "closest": self.closest,
            "budget": self.budget,
            "generated": self.generated,
            "models": [m.to_json() for m in self.models],
            "variables": [a.to_json() for a in self.variables],
            "split": [dict(s) for s in self.split],
            "screen": [s.to_json() for s in self.screens],
            "probes": None if self.probes is None else self.probes.to_json(),
            "seed": self.seed,
            "n": self.n,
            "threshold": THRESHOLD,
        }


def split_inputs(models: tuple[ModelScore, ...], groups: np.ndarray) -> tuple[dict, ...]:
    """Which model explains which failure groups (coverage >= threshold), and their share.

    Each group goes to the model covering it best, as a partition of the inputs
    in the manner of Pîslar, Magliacane & Geiger (2025).
    """
    assigned: dict[str, list[str]] = {}
    for group in FailureGroup:
        scores = [(m.coverage.get(group.label), m.name) for m in models]
        good = [(s, name) for s, name in scores if s is not None and s >= THRESHOLD]
        if good:
            assigned.setdefault(max(good)[1], []).append(group.label)
    out = []
    for name, labels in assigned.items():
        share = float(np.isin(groups, [FailureGroup.from_label(g) for g in labels]).mean())
        out.append({"model": name, "groups": labels, "share": share})
    return tuple(out)
