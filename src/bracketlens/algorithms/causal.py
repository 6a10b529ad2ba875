"""High-level causal models of bracket balancing: named variables and a rule.

A :class:`CausalModel` is a hypothesis about what a bracket classifier computes:
intermediate :class:`Variable` s, each a plain numpy function of the tokens
(vectorised over a data set), and a ``rule`` that combines their values into the
label (True = balanced). An interchange intervention on one variable gives the
*counterfactual label*: the rule applied to the base's values with that one
variable taken from the source (:meth:`CausalModel.counterfactual`).

Users add their own with :func:`register`.

>>> import numpy as np
>>> from bracketlens.data import tokenize
>>> m = MODELS["elevation_and_negative"]
>>> v = m.values(tokenize(["(())", "((", "))(("]).numpy())
>>> v["elevation"].tolist(), v["negative"].tolist()
([0, 2, 0], [False, True, True])
>>> m.rule(v).tolist()
[True, False, False]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bracketlens.data.tokens import CLOSE, MAX_PARENS, OPEN
from bracketlens.errors import BracketLensError

#: ``[batch, seq]`` int token ids (as numpy), the input every variable reads.
Tokens = np.ndarray
Values = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Variable:
    """One intermediate variable of a causal model.

    Attributes:
        name: unique within its model; the key of :meth:`CausalModel.values`.
        compute: tokens ``[batch, seq]`` -> one value per string ``[batch]``.
        position: the token position it is about (a per-position variable), so
            screening looks only there; None: screened at every position.
        same_first_token: sources share the base's first paren (so that the
            starts-with-close shortcut does not ride along); off for variables
            that are about the first paren.
        intervened: False for background values that the rule needs but that are
            never patched (e.g. the suffixes a per-position model does not name).
    """

    name: str
    compute: Callable[[Tokens], np.ndarray]
    position: int | None = None
    same_first_token: bool = True
    intervened: bool = True


@dataclass(frozen=True)
class CausalModel:
    """Named variables and the rule combining them into the label (True = balanced)."""

    name: str
    variables: tuple[Variable, ...]
    rule: Callable[[Values], np.ndarray]
    description: str = ""
    rule_text: str = ""  # the rule as text ("elevation_zero AND NOT suffix_positive")
    generated: bool = False  # made by the grammar (:mod:`.generate`), not by hand
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(v.name for v in self.variables)
        if len(set(names)) != len(names):
            raise BracketLensError(f"causal model {self.name!r} repeats a variable name")
        object.__setattr__(self, "_names", names)

    @property
    def intervened(self) -> tuple[Variable, ...]:
        """The variables that interchange interventions align."""
        return tuple(v for v in self.variables if v.intervened)

    def values(self, tokens: Tokens) -> dict[str, np.ndarray]:
        """Every variable's value for every string."""
        return {v.name: np.asarray(v.compute(tokens)) for v in self.variables}

    def counterfactual(self, base: Values, source: Values, variable: str) -> np.ndarray:
        """The label after ``variable`` is interchanged from ``source`` into ``base``."""
        if variable not in self._names:
            known = ", ".join(self._names)
            raise BracketLensError(f"model {self.name!r} has no variable {variable!r}; use {known}")
        mixed = dict(base)
        mixed[variable] = source[variable]
        return np.asarray(self.rule(mixed), dtype=bool)


MODELS: dict[str, CausalModel] = {}


def register(model: CausalModel, *, replace: bool = False) -> CausalModel:
    """Add ``model`` to :data:`MODELS`, the models that :func:`explain` tests by default."""
    if model.name in MODELS and not replace:
        raise BracketLensError(
            f"a causal model named {model.name!r} exists; pass replace=True or rename it"
        )
    if model.name == "none":
        raise BracketLensError("'none' is the verdict when no model fits; choose another name")
    MODELS[model.name] = model
    return model


# --- the variables, read from tokens the way the course reads them (right to left) ---


def suffix_elevations(tokens: Tokens) -> np.ndarray:
    """``[batch, seq]`` int8: n_open - n_close of the suffix starting at each position.

    Eight bits hold any elevation of a string of at most 40 parens, and the grammar's
    check set (a few hundred thousand strings) is read through this once per model.
    """
    step = (tokens == OPEN).view(np.int8) - (tokens == CLOSE).view(np.int8)
    return np.flip(np.cumsum(np.flip(step, -1), -1, dtype=np.int8), -1)


def elevation(tokens: Tokens) -> np.ndarray:
    """n_open - n_close of the whole string."""
    return suffix_elevations(tokens)[:, 1] if tokens.shape[1] > 1 else np.zeros(len(tokens), int)


def negative(tokens: Tokens) -> np.ndarray:
    """Some suffix has more ``(`` than ``)``: reading right to left, elevation goes above 0."""
    return suffix_elevations(tokens).max(-1) > 0


def starts_with_close(tokens: Tokens) -> np.ndarray:
    """The first paren is ``)``."""
    return tokens[:, 1] == CLOSE


def ends_with_open(tokens: Tokens) -> np.ndarray:
    """The last paren is ``(``."""
    n = (tokens >= OPEN).sum(-1)
    return tokens[np.arange(len(tokens)), n] == OPEN


def _balanced(v: Values) -> np.ndarray:
    return (v["elevation"] == 0) & ~v["negative"].astype(bool)


def _with_shortcuts(v: Values) -> np.ndarray:
    shortcut = v["starts_with_close"].astype(bool) | v["ends_with_open"].astype(bool)
    return _balanced(v) & ~shortcut


ELEVATION = Variable("elevation", elevation)
NEGATIVE = Variable("negative", negative)
SHORTCUTS = (
    Variable("starts_with_close", starts_with_close, position=1, same_first_token=False),
    Variable("ends_with_open", ends_with_open),
)


def suffix_elevation_model(positions: int = 4) -> CausalModel:
    """Per-position model: the suffix elevation at positions 1..``positions``.

    Balanced iff the suffix from position 1 has elevation 0 and no suffix has
    elevation above 0. Suffixes starting past ``positions`` enter the rule as one
    background value (their maximum elevation) that is never interchanged.
    """
    if not 1 <= positions <= MAX_PARENS:
        raise BracketLensError(f"positions must be 1..{MAX_PARENS}, got {positions}")

    def at(i: int) -> Callable[[Tokens], np.ndarray]:
        def value(tokens: Tokens) -> np.ndarray:
            s = suffix_elevations(tokens)
            return s[:, i] if i < s.shape[1] else np.zeros(len(tokens), np.int64)

        return value

    def rest(tokens: Tokens) -> np.ndarray:
        s = suffix_elevations(tokens)
        return s[:, positions + 1 :].max(-1, initial=0)

    names = [f"suffix_elevation_{i}" for i in range(1, positions + 1)]

    def rule(v: Values) -> np.ndarray:
        highest = np.maximum.reduce([v[n] for n in names] + [v["suffix_rest_max"]])
        return (v[names[0]] == 0) & (highest <= 0)

    variables = tuple(Variable(n, at(i), position=i) for i, n in enumerate(names, 1))
    return CausalModel(
        "suffix_elevation",
        (*variables, Variable("suffix_rest_max", rest, intervened=False)),
        rule,
        "the elevation of the suffix at each position, as a negative-detecting head reads it",
        rule_text="suffix_elevation_1 == 0 AND NOT max(suffix_elevation_1.., suffix_rest_max) > 0",
    )


register(
    CausalModel(
        "elevation_and_negative",
        (ELEVATION, NEGATIVE),
        _balanced,
        "balanced iff the total elevation is 0 and no suffix goes above 0 (the course's)",
        rule_text="elevation == 0 AND NOT negative",
    )
)
register(
    CausalModel(
        "elevation_negative_shortcuts",
        (ELEVATION, NEGATIVE, *SHORTCUTS),
        _with_shortcuts,
        "the course's model plus two shortcuts: a string starting with ')' or ending with '(' "
        "is unbalanced",
        rule_text="elevation == 0 AND NOT negative AND NOT starts_with_close "
        "AND NOT ends_with_open",
    )
)
register(suffix_elevation_model())
