"""Interchange equivalence: when two causal models, or two of their variables, are one.

Two models are equivalent when every interchange (base, source, variable) on the check
set (:func:`.grammar.check_tokens`) gives the same counterfactual label in both, under
some one-to-one matching of their variables; an interchange-equivalent model makes the
same predictions for every experiment ``explain`` runs, so :mod:`.generate` keeps one
of each class. The work is done on the distinct rows of the models' values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from bracketlens.algorithms.causal import CausalModel, Values
from bracketlens.algorithms.grammar import check_tokens


def equivalent(
    a: CausalModel, b: CausalModel, known: dict[tuple[str, int], Values] | None = None
) -> bool:
    """Whether every interchange (base, source, variable) on the check set gives the same
    counterfactual label in both, under some one-to-one matching of their variables.

    Args:
        known: the models' values on the check set by (name, id), filled as computed
            (default: one table for the process).
    """
    if len(a.intervened) != len(b.intervened):
        return False
    sample = check_tokens()[np.random.default_rng(0).choice(len(check_tokens()), 4096)]
    if not _interchanges_match(a, b, a.values(sample), b.values(sample)):
        return False  # most pairs of models differ on a few thousand strings already
    return _interchanges_match(a, b, *_checked(a, b, _KNOWN if known is None else known))


#: models' values on the check set, by (name, id): computed once per process
_KNOWN: dict[tuple[str, int], Values] = {}


def _checked(
    a: CausalModel, b: CausalModel, known: dict[tuple[str, int], Values]
) -> tuple[Values, Values]:
    """Both models' values on the check set, from ``known`` or computed into it."""
    for m in (a, b):
        if (m.name, id(m)) not in known:
            known[m.name, id(m)] = m.values(check_tokens())
    return known[a.name, id(a)], known[b.name, id(b)]


def _distinct(va: Values, vb: Values) -> tuple[Values, Values]:
    """The values at every distinct row of both models' values, once (sources' value
    pairs occur among them too)."""
    _, first = np.unique(_row_key([*va.values(), *vb.values()]), return_index=True)
    return {k: v[first] for k, v in va.items()}, {k: v[first] for k, v in vb.items()}


def _interchanges_match(a: CausalModel, b: CausalModel, va: Values, vb: Values) -> bool:
    """The interchanges agree on these strings' values, under some matching of variables."""
    ia, ib = a.intervened, b.intervened
    va, vb = _distinct(va, vb)
    rows = np.random.default_rng(0).permutation(len(va[ia[0].name]))

    def agree(x: str, y: str) -> bool:  # most pairs differ on a few rows already
        return all(_same_interchanges(a, b, va, vb, part, x, y)
                   for part in (rows[:64], rows))  # fmt: skip

    same = np.array([[agree(x.name, y.name) for y in ib] for x in ia])
    return any(
        all(same[i, j] for i, j in enumerate(perm))
        for perm in itertools.permutations(range(len(ib)))
    )


def same_variable(a: CausalModel, x: str, b: CausalModel, y: str) -> bool:
    """Whether interchanging ``x`` in ``a`` and ``y`` in ``b`` gives the same counterfactual
    label for every base and source value on the check set: one variable, to
    interchanges, whatever its name (the course's ``elevation`` and the grammar's
    ``elevation_zero`` where the label reads the elevation only through ``== 0``)."""
    va, vb = _distinct(*_checked(a, b, _KNOWN))
    return _same_interchanges(a, b, va, vb, np.arange(len(va[x])), x, y)


def _row_key(columns: Sequence[np.ndarray]) -> np.ndarray:
    """One int64 per row, equal exactly where every column is (the rows' identities)."""
    key = np.zeros(len(columns[0]), np.int64)
    for column in columns:
        code = np.asarray(column, np.int64)
        code = code - code.min()
        span = int(code.max()) + 1
        if int(key.max()) * span >= 2**62:  # renumber the rows seen so far, densely
            key = np.unique(key, return_inverse=True)[1].ravel()
        key = key * span + code
    return key


def _same_interchanges(
    a: CausalModel, b: CausalModel, va: Values, vb: Values, rows: np.ndarray, x: str, y: str
) -> bool:
    """Model ``a`` interchanging ``x`` and ``b`` interchanging ``y`` agree for every
    distinct base (``rows``) and every source value pair that occurs."""
    _, pick = np.unique(_row_key([va[x], vb[y]]), return_index=True)
    sources = np.stack([va[x][pick], vb[y][pick]], 1)
    base = np.repeat(rows, len(sources))
    src_x, src_y = np.tile(sources[:, 0], len(rows)), np.tile(sources[:, 1], len(rows))
    left = a.counterfactual({k: v[base] for k, v in va.items()}, {x: src_x}, x)
    right = b.counterfactual({k: v[base] for k, v in vb.items()}, {y: src_y}, y)
    return bool((left == right).all())
