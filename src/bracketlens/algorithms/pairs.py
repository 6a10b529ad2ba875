"""Base/source pairs for interchange interventions on one variable, by kind and split.

Only *informative* bases are used: those whose label depends on the variable
when every other variable keeps the base's value (for ``elevation``, bases that
never go negative; for ``negative``, bases of zero elevation). Sources have the
base's length (so positions line up) and, unless the variable is about the first
paren, its first paren.

Three kinds of pair are drawn in equal numbers within each base failure group:

- ``to_unbalanced``: the counterfactual label flips a balanced base;
- ``to_balanced``: it flips an unbalanced base;
- ``unchanged``: it equals the base's label.

Within each kind, up to half of the pairs have a counterfactual label that
differs from the source's own label, so that a location merely carrying the
source's decision does not pass for one carrying the variable.

Each kind is split into train (fits rotations), validation (chooses the
location) and test (the reported IIA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bracketlens.algorithms.causal import CausalModel, Values, Variable
from bracketlens.data.tokens import OPEN
from bracketlens.data.truth import FailureGroup

KINDS = ("to_unbalanced", "to_balanced", "unchanged")
SPLITS = ("train", "validation", "test")
MIN_PER_KIND = 8  # fewer pairs than this of a kind in a group: they do not set the others' number


@dataclass(frozen=True)
class PairCounts:
    """How many pairs of each kind, per base failure group, go to each split."""

    train: int = 64
    validation: int = 48
    test: int = 96

    @property
    def total(self) -> int:
        return self.train + self.validation + self.test


@dataclass(frozen=True)
class Pairs:
    """Pairs of string indices with their kind, base group, split and labels (all ``[pairs]``)."""

    base: np.ndarray
    source: np.ndarray
    kind: np.ndarray  # index into KINDS
    group: np.ndarray  # the base's FailureGroup
    split: np.ndarray  # index into SPLITS
    label: np.ndarray  # counterfactual label (True = balanced)
    base_label: np.ndarray  # the high-level model's label of the base
    telling: np.ndarray  # the counterfactual label differs from the source's own label

    def __len__(self) -> int:
        return len(self.base)

    def take(self, rows: np.ndarray) -> Pairs:
        """The pairs at ``rows`` (indices or a boolean mask)."""
        return Pairs(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def in_split(self, name: str) -> Pairs:
        return self.take(self.split == SPLITS.index(name))

    def thin(self, per_cell: int, seed: int) -> Pairs:
        """At most ``per_cell`` pairs of each (group, kind): a cheaper sample for screening."""
        rng = np.random.default_rng(seed)
        keep: list[np.ndarray] = []
        for cell in np.unique(self.group * len(KINDS) + self.kind):
            rows = np.flatnonzero(self.group * len(KINDS) + self.kind == cell)
            keep.append(rng.permutation(rows)[:per_cell])
        return self.take(np.sort(np.concatenate(keep)) if keep else np.zeros(0, int))


def informative_bases(model: CausalModel, variable: Variable, values: Values) -> np.ndarray:
    """``[batch]`` bool: the label changes with some value of ``variable`` (others fixed)."""
    column = values[variable.name]
    low = np.ones(len(column), dtype=bool)
    high = np.zeros(len(column), dtype=bool)
    for u in np.unique(column):
        label = model.counterfactual(
            values, {variable.name: np.full_like(column, u)}, variable.name
        )
        low &= label
        high |= label
    return low != high


def sample_pairs(
    model: CausalModel,
    variable: Variable,
    values: Values,
    tokens: np.ndarray,
    groups: np.ndarray,
    split_of: np.ndarray,
    counts: PairCounts,
    rng: np.random.Generator,
) -> Pairs:
    """Pairs for ``variable``: equal numbers of each possible kind within each base group.

    Args:
        split_of: each string's split (:func:`string_splits`); a pair takes its base's.
    """
    lengths = (tokens >= OPEN).sum(-1)
    key = lengths * 2 + (tokens[:, 1] == OPEN if variable.same_first_token else 0)
    order = np.argsort(key, kind="stable")
    starts = np.searchsorted(key[order], key)
    sizes = np.searchsorted(key[order], key, side="right") - starts
    useful = informative_bases(model, variable, values)
    base_label = np.asarray(model.rule(values), dtype=bool)
    parts: list[Pairs] = []
    # one stream per split: more test pairs leave the train and validation pairs as they are
    streams = rng.integers(0, 2**63 - 1, size=len(SPLITS))
    for group in FailureGroup:
        for split, quota in enumerate((counts.train, counts.validation, counts.test)):
            candidates = np.flatnonzero(useful & (groups == group) & (split_of == split))
            if len(candidates) == 0 or quota == 0:
                continue
            rng = np.random.default_rng([int(streams[split]), int(group)])
            base = rng.choice(candidates, size=40 * quota)
            source = order[starts[base] + rng.integers(0, sizes[base])]
            base, source = base[source != base], source[source != base]
            if SPLITS[split] == "test":  # each test pair measured once: n counts distinct pairs
                _, first = np.unique(base * len(tokens) + source, return_index=True)
                base, source = base[np.sort(first)], source[np.sort(first)]
            label = model.counterfactual(_at(values, base), _at(values, source), variable.name)
            kind = _kind(base_label[base], label)
            telling = label != base_label[source]
            spread = rng if SPLITS[split] == "test" else None
            cells = _equal_kinds(base, source, kind, label, base_label[base], telling, quota,
                                 spread)  # fmt: skip
            parts.append(_with(cells, group, split))
    return concat(parts)


def _at(values: Values, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in values.items()}


def _kind(base_label: np.ndarray, label: np.ndarray) -> np.ndarray:
    kind = np.full(len(label), KINDS.index("unchanged"))
    kind[base_label & ~label] = KINDS.index("to_unbalanced")
    kind[~base_label & label] = KINDS.index("to_balanced")
    return kind


def string_splits(n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n]`` split of each string (0 train, 1 validation, 2 test): a pair's split is its base's.

    Splitting strings rather than pairs keeps every test base out of the pairs
    that fitted a rotation or chose a location, whichever causal model drew them.
    """
    return rng.permutation(np.arange(n) % len(SPLITS))


def _equal_kinds(
    base: np.ndarray,
    source: np.ndarray,
    kind: np.ndarray,
    label: np.ndarray,
    base_label: np.ndarray,
    telling: np.ndarray,
    quota: int,
    spread: np.random.Generator | None = None,
) -> tuple[np.ndarray, ...]:
    """The same number of pairs of each kind that has enough of them (at most ``quota``);
    a kind with fewer than :data:`MIN_PER_KIND` keeps all it has.

    With ``spread`` (a generator: the test pairs), a kind's pairs are spread over the
    bases as evenly as their shares allow (:func:`_spread`) rather than taken in draw
    order. Outcomes of pairs that share a base are not independent, and the guards'
    bounds widen with the sharing (:mod:`.guards`).

    Within a kind, up to half are *telling* pairs, whose counterfactual label
    differs from the source's own label: there a patch that only carries the
    source's decision (e.g. the whole residual at position 0 in the last layer)
    is wrong, and one that carries the variable is right.
    """
    available = [int((kind == k).sum()) for k in range(len(KINDS))]
    present = [k for k in range(len(KINDS)) if available[k] >= min(MIN_PER_KIND, quota)]
    n = min([quota, *(available[k] for k in present)])
    picked = []
    for k in range(len(KINDS)):
        # a rare kind keeps the few pairs it has: its guards then count as untested
        # (too few pairs) instead of vanishing from the verdict
        of_kind = np.flatnonzero(kind == k)
        if spread is None:
            first = of_kind[telling[of_kind]][: (n + 1) // 2]
            rest = of_kind[~telling[of_kind]][: n - len(first)]
        else:
            first = _spread(of_kind[telling[of_kind]], base, (n + 1) // 2, spread)
            rest = _spread(of_kind[~telling[of_kind]], base, n - len(first), spread)
        picked.append(np.concatenate([first, rest]))
    rows = np.concatenate(picked or [np.zeros(0, int)])
    rows = rows.astype(int)
    return base[rows], source[rows], kind[rows], label[rows], base_label[rows], telling[rows]


def _spread(rows: np.ndarray, base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``rows`` (pairs drawn from the pair distribution, in draw order) with each
    base's count as near as can be to its share of the draw: the floor or the ceiling of
    ``n`` times that share, by systematic sampling over the bases in a random order, and
    its first drawn pairs.

    Each base keeps its expected share, so the pairs measure what a plain draw of ``n``
    would; but a base that a plain draw would take twice by chance is taken once where
    its share is under 1 / ``n``.
    """
    if n >= len(rows):
        return rows
    _, inverse, counts = np.unique(base[rows], return_inverse=True, return_counts=True)
    order = rng.permutation(len(counts))
    ends = np.cumsum(counts[order])
    points = (rng.random() + np.arange(n)) * (len(rows) / n)
    take = np.bincount(order[np.searchsorted(ends, points, side="right")], minlength=len(counts))
    return rows[_reuse(base[rows]) < take[inverse]]


def _reuse(strings: np.ndarray) -> np.ndarray:
    """``[n]``: how many times each entry's string came before it in ``strings``."""
    order = np.argsort(strings, kind="stable")
    ordered = strings[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run = np.arange(len(strings)) - np.repeat(starts, np.diff(np.r_[starts, len(strings)]))
    out = np.empty(len(strings), dtype=np.int64)
    out[order] = run
    return out


def _with(cells: tuple[np.ndarray, ...], group: int, split: int) -> Pairs:
    base, source, kind, label, base_label, telling = cells
    n = len(base)
    return Pairs(base, source, kind, np.full(n, int(group)), np.full(n, split), label,
                 base_label, telling)  # fmt: skip


def concat(parts: list[Pairs]) -> Pairs:
    """The pairs of every part, one after another."""
    fields = Pairs.__dataclass_fields__
    if not parts:
        boolean = ("label", "base_label", "telling")
        return Pairs(*(np.zeros(0, dtype=bool if f in boolean else int) for f in fields))
    return Pairs(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))
