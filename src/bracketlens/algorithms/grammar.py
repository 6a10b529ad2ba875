"""A grammar of bracket variables, and the exact causal models generated from it.

**Quantities**, computed in numpy from the tokens: the total elevation, the
minimum prefix elevation and the maximum suffix elevation (the empty prefix and
suffix count, and so does the whole string, as both), the maximum depth, the
first and the last paren, the length, and the per-position families of prefix
and suffix elevations.

**Atoms** are the booleans ``x == 0``, ``x > 0`` and ``x < 0`` of the integers
and the two paren facts; an atom that is constant on the check set, or the
complement of an earlier one, is left out (NOT is part of every rule).

**Causal models** are one to three atoms joined by a rule of AND and OR (nested
at most two deep, NOT on the atoms) that gives the true label on every string
of the check set (:func:`check_tokens`: every string up to 16 parens and 100,000
sampled ones up to 40), with no atom the label can do without. Each may carry
one or two *shortcut* add-ons, paren atoms ``s`` with ``s => unbalanced``
("starts with ')'"). A model whose rule reads the minimum prefix or the maximum
suffix elevation also comes as a *per-position* model, that family's values at
positions 1-4 (and the rest as one background value).

**Deduplication**: two models are the same hypothesis when every interchange
(base, source, variable) on the check set gives the same counterfactual label,
under some one-to-one matching of their variables (:func:`fingerprint`).

>>> models = generated_models()                      # doctest: +SKIP
>>> models[0].rule_text                              # doctest: +SKIP
'elevation_zero AND NOT suffix_positive'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bracketlens.algorithms.causal import Tokens, Variable
from bracketlens.data.tokens import CLOSE, END, MAX_PARENS, OPEN, PAD, START

CHECK_ALL_UP_TO = 16  # every string of at most this many parens is checked
CHECK_SAMPLED = 100_000  # and this many sampled strings of up to MAX_PARENS
FAMILY_POSITIONS = 4  # a per-position model names positions 1..4


# --- quantities ---


def steps(tokens: Tokens) -> np.ndarray:
    """``[batch, seq]`` int8: +1 at ``(``, -1 at ``)``, 0 elsewhere."""
    return (tokens == OPEN).astype(np.int8) - (tokens == CLOSE).astype(np.int8)


def prefix_elevations(tokens: Tokens) -> np.ndarray:
    """``[batch, seq]`` int8: the elevation of the prefix ending at each position (0 at
    [start]; the whole string's past its end)."""
    return _memo(tokens, "prefix", lambda: np.cumsum(steps(tokens), -1, dtype=np.int8))


def suffix_elevations(tokens: Tokens) -> np.ndarray:
    """``[batch, seq]`` int8: the elevation of the suffix starting at each position (0 past
    the end)."""
    return _memo(
        tokens,
        "suffix",
        lambda: np.flip(np.cumsum(np.flip(steps(tokens), -1), -1, dtype=np.int8), -1),
    )


_LAST: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _memo(tokens: Tokens, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, kept for the last token array asked about: every atom and every
    per-position variable of every model reads the same two elevation matrices of the
    same strings (the check set, or explain's data)."""
    kept = _LAST.get(key)
    if kept is not None and kept[0] is tokens:
        return kept[1]
    value = compute()
    value.flags.writeable = False
    _LAST[key] = (tokens, value)
    return value


def _length(tokens: Tokens) -> np.ndarray:
    return (tokens >= OPEN).sum(-1)


QUANTITIES: dict[str, Callable[[Tokens], np.ndarray]] = {
    "elevation": lambda t: prefix_elevations(t)[:, -1].astype(np.int64),
    "min_prefix": lambda t: prefix_elevations(t).min(-1).astype(np.int64),
    "max_suffix": lambda t: suffix_elevations(t).max(-1).astype(np.int64),
    "max_depth": lambda t: prefix_elevations(t).max(-1).astype(np.int64),
    "length": _length,
}


_COMPARE = {"==": np.equal, ">": np.greater, "<": np.less}


@dataclass(frozen=True)
class Atom:
    """One boolean of the grammar: ``quantity op 0``, or a paren fact (``op`` ``"is"``)."""

    name: str
    text: str  # plain words when true, for the verdict
    negated: str  # plain words when false
    quantity: str  # a key of QUANTITIES, or "first_paren" / "last_paren"
    op: str = "is"

    @property
    def shortcut(self) -> bool:
        """A paren fact: it may ride along as an add-on."""
        return self.op == "is"

    def compute(self, tokens: Tokens) -> np.ndarray:
        """The atom of every string (``[batch]`` bool)."""
        if self.quantity == "first_paren":
            return _starts_with_close(tokens)
        if self.quantity == "last_paren":
            return _ends_with_open(tokens)
        value = _memo(tokens, self.quantity, lambda: QUANTITIES[self.quantity](tokens))
        return self.compute_from({self.quantity: value})

    def compute_from(self, quantities: Mapping[str, np.ndarray]) -> np.ndarray:
        """The atom from its quantity's values (for models that hold the quantity's parts)."""
        return np.asarray(_COMPARE[self.op](quantities[self.quantity], 0), dtype=bool)

    def variable(self) -> Variable:
        """The atom as a causal variable (the first paren's is about position 1)."""
        return _variable(self.name)


def _starts_with_close(tokens: Tokens) -> np.ndarray:
    return tokens[:, 1] == CLOSE


def _ends_with_open(tokens: Tokens) -> np.ndarray:
    return tokens[np.arange(len(tokens)), _length(tokens)] == OPEN


#: every atom before the check set prunes constants and complements:
#: (name, words when true, words when false, quantity, comparison with 0)
_INTEGER_ATOMS = (
    ("elevation_zero", "the total elevation is 0", "the total elevation is not 0", "elevation", "=="),
    ("more_opens", "the string opens more than it closes",
     "the string opens no more than it closes", "elevation", ">"),
    ("more_closes", "the string closes more than it opens",
     "the string closes no more than it opens", "elevation", "<"),
    ("prefix_negative", "some prefix closes more than it opens",
     "no prefix closes more than it opens", "min_prefix", "<"),
    ("prefix_level", "no prefix closes more than it opens",
     "some prefix closes more than it opens", "min_prefix", "=="),
    ("every_prefix_up", "every prefix opens more than it closes",
     "some prefix opens no more than it closes", "min_prefix", ">"),
    ("suffix_positive", "some suffix opens more than it closes",
     "no suffix opens more than it closes", "max_suffix", ">"),
    ("suffix_level", "no suffix opens more than it closes",
     "some suffix opens more than it closes", "max_suffix", "=="),
    ("every_suffix_down", "every suffix closes more than it opens",
     "some suffix closes no more than it opens", "max_suffix", "<"),
    ("prefix_positive", "some prefix opens more than it closes",
     "no prefix opens more than it closes", "max_depth", ">"),
    ("depth_zero", "no prefix opens more than it closes",
     "some prefix opens more than it closes", "max_depth", "=="),
    ("depth_negative", "the depth is below 0", "the depth is not below 0", "max_depth", "<"),
    ("empty", "the string is empty", "the string has a paren", "length", "=="),
    ("nonempty", "the string has a paren", "the string is empty", "length", ">"),
    ("length_negative", "the length is below 0", "the length is not below 0", "length", "<"),
)  # fmt: skip
CANDIDATE_ATOMS: tuple[Atom, ...] = (
    *(Atom(*fields) for fields in _INTEGER_ATOMS),
    Atom("starts_with_close", "the first paren is ')'", "the first paren is not ')'",
         "first_paren"),
    Atom("ends_with_open", "the last paren is '('", "the last paren is not '('", "last_paren"),
)  # fmt: skip


@functools.cache
def _variable(name: str) -> Variable:
    """One :class:`Variable` object per atom, so that every model shares it (and explain
    screens it once)."""
    atom = next(a for a in CANDIDATE_ATOMS if a.name == name)
    if atom.quantity == "first_paren":
        return Variable(name, atom.compute, position=1, same_first_token=False)
    return Variable(name, atom.compute)


# --- the check set ---


@functools.cache
def check_tokens() -> np.ndarray:
    """Every string of up to 16 parens and 100,000 sampled ones of up to 40, as tokens.

    Half of the sampled strings are balanced (uniformly random Dyck paths of an even
    length), half uniformly random strings of a uniformly random length 0..40:
    uniformly random long strings are almost never balanced.
    """
    blocks = []
    for n in range(CHECK_ALL_UP_TO + 1):
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None]) & 1
        blocks.append(_tokens(np.where(bits == 1, 1, -1), np.full(2**n, n)))
    rng = np.random.default_rng(0)
    half = CHECK_SAMPLED // 2
    lengths = rng.integers(0, MAX_PARENS + 1, size=half)
    blocks.append(_tokens(rng.choice(np.array([1, -1]), size=(half, MAX_PARENS)), lengths))
    for n, count in zip(*np.unique(2 * rng.integers(0, MAX_PARENS // 2 + 1, size=half),
                                   return_counts=True), strict=True):  # fmt: skip
        blocks.append(_tokens(_dyck(int(n), int(count), rng), np.full(count, n)))
    return np.concatenate(blocks)


def _tokens(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``[rows, MAX_PARENS + 2]`` tokens of +1/-1 ``words`` cut at ``lengths``."""
    out = np.full((len(lengths), MAX_PARENS + 2), PAD, np.int8)
    out[:, 0] = START
    cols = np.arange(words.shape[1])[None]
    inside = cols < lengths[:, None]
    out[:, 1 : words.shape[1] + 1] = np.where(inside, np.where(words > 0, OPEN, CLOSE), PAD)
    out[np.arange(len(lengths)), lengths + 1] = END
    return out


def _dyck(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniformly random balanced strings of ``n`` parens as +1/-1 (the cycle lemma)."""
    if n == 0:
        return np.zeros((count, 0), np.int64)
    word = np.r_[np.ones(n // 2 + 1, np.int64), -np.ones(n // 2, np.int64)]
    words = word[np.argsort(rng.random((count, n + 1)), axis=1)]
    before = np.cumsum(words, 1) - words  # the sum before each step
    cut = n - np.argmin(before[:, ::-1], axis=1)  # after the last minimum
    # the one rotation whose sums stay above 0 starts there, with a '(' to drop
    index = (cut[:, None] + np.arange(n + 1)[None]) % (n + 1)
    return np.take_along_axis(words, index, 1)[:, 1:]


def true_labels(tokens: Tokens) -> np.ndarray:
    """Balanced: total elevation 0 and no prefix below 0."""
    return (QUANTITIES["elevation"](tokens) == 0) & (QUANTITIES["min_prefix"](tokens) == 0)
