"""Seeded generators of bracket-string data sets.

Three pinned recipes, each a pure function of ``(n, seed)``:

- :func:`evaluation_set`: the distribution behind ``--n N --seed S`` everywhere.
  Lengths uniform over the even numbers 2..40; exactly ``n // 2`` balanced
  strings (uniformly random balanced strings of the drawn length) and the rest
  unbalanced (uniformly random strings of that length, redrawn while balanced),
  in shuffled order.
- :func:`near_miss_set`: robustness families: balanced strings with one adjacent
  pair swapped, balanced strings with one character flipped, the ``A)(B`` family
  (``A``, ``B`` balanced), and odd lengths 1..39. Labels come from the ground truth.
- :func:`training_set`: what ``bracketlens train`` learns from (see its docstring).

Strings are handled as ``int8`` arrays of +1 (``(``) and -1 (``)``) until the end.
"""

from __future__ import annotations

import numpy as np
import torch

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import MAX_PARENS
from bracketlens.errors import BracketLensError
from bracketlens.limits import check_seed

EVEN_LENGTHS = np.arange(2, MAX_PARENS + 1, 2)
NEAR_MISS_FAMILIES = ("swap", "flip", "a_close_open_b", "odd")


def evaluation_set(n: int, seed: int) -> BracketDataset:
    """The pinned evaluation distribution (module docstring), ``n`` strings."""
    _check_n(n)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    lengths = rng.choice(EVEN_LENGTHS, size=n)
    balanced = np.zeros(n, dtype=bool)
    balanced[: n // 2] = True
    rng.shuffle(balanced)
    strings = np.empty(n, dtype=object)
    for length in np.unique(lengths):
        for want_balanced in (True, False):
            idx = np.flatnonzero((lengths == length) & (balanced == want_balanced))
            steps = (random_balanced if want_balanced else random_unbalanced)(
                int(length), len(idx), rng
            )
            strings[idx] = _to_strings(steps)
    return BracketDataset(
        list(strings),
        torch.from_numpy(balanced),
        validate=True,
        description=f"evaluation set n={n} seed={seed}",
    )


def near_miss_set(n: int, seed: int) -> BracketDataset:
    """Near-miss strings, an equal share of each family in ``NEAR_MISS_FAMILIES``."""
    _check_n(n)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    families = np.resize(np.arange(len(NEAR_MISS_FAMILIES)), n)
    rng.shuffle(families)
    strings = [_near_miss(NEAR_MISS_FAMILIES[f], rng) for f in families]
    return BracketDataset(strings, description=f"near-miss set n={n} seed={seed}")


def training_set(n: int, seed: int) -> BracketDataset:
    """The training recipe: half balanced, half hard unbalanced strings.

    Balanced strings are uniformly random at a length drawn uniformly from the even
    numbers 0..40. The unbalanced half is a mix chosen so that both failure types
    and near misses are well represented: 40% uniformly random strings of an even
    length (redrawn while balanced), and 12% each of the four near-miss families
    plus balanced strings whose first or last few characters were redrawn (strings
    that fail only at one end). Near misses that happen to be balanced are replaced
    by a one-character flip, which never is.
    """
    _check_n(n)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    n_bal = n // 2
    bal_lengths = rng.choice(np.arange(0, MAX_PARENS + 1, 2), size=n_bal)
    strings: list[str] = []
    for length in np.unique(bal_lengths):
        count = int((bal_lengths == length).sum())
        strings += _to_strings(random_balanced(int(length), count, rng))
    n_unbal = n - n_bal
    n_uniform = int(0.4 * n_unbal)
    un_lengths = rng.choice(EVEN_LENGTHS, size=n_uniform)
    for length in np.unique(un_lengths):
        count = int((un_lengths == length).sum())
        strings += _to_strings(random_unbalanced(int(length), count, rng))
    kinds = (*NEAR_MISS_FAMILIES, "end")
    strings += [
        _near_miss(kinds[i % len(kinds)], rng, force_unbalanced=True)
        for i in range(n_unbal - n_uniform)
    ]
    order = rng.permutation(n)
    return BracketDataset(
        [strings[i] for i in order], description=f"training set n={n} seed={seed}"
    )


def random_balanced(length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniformly random balanced strings of even ``length``, as +-1 steps.

    Cycle lemma: of the ``length + 1`` rotations of a random arrangement of
    ``length/2`` up-steps and ``length/2 + 1`` down-steps, exactly one keeps every
    proper prefix >= 0; dropping its final down-step gives a uniform Dyck word.
    """
    if length % 2:
        raise BracketLensError(f"balanced strings have even length, got {length}")
    half = length // 2
    if count == 0 or length == 0:
        return np.zeros((count, length), dtype=np.int8)
    base = np.array([1] * half + [-1] * (half + 1), dtype=np.int8)
    perm = np.argsort(rng.random((count, length + 1)), axis=1)
    seqs = base[perm]
    # rotate each row to start just after its first global minimum prefix sum
    start = np.argmin(np.cumsum(seqs, axis=1), axis=1) + 1
    cols = (start[:, None] + np.arange(length + 1)[None, :]) % (length + 1)
    rotated = np.take_along_axis(seqs, cols, axis=1)
    return rotated[:, :length]


def random_unbalanced(length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniformly random unbalanced strings of ``length``, as +-1 steps."""
    if length == 0 and count:
        raise BracketLensError("the empty string is balanced; no unbalanced string has length 0")
    out = rng.choice(np.array([1, -1], dtype=np.int8), size=(count, length))
    redo = _balanced_rows(out)
    while redo.any():
        out[redo] = rng.choice(np.array([1, -1], dtype=np.int8), size=(int(redo.sum()), length))
        redo = _balanced_rows(out)
    return out


def _near_miss(family: str, rng: np.random.Generator, force_unbalanced: bool = False) -> str:
    """One string of a near-miss family.

    ``swap`` and ``end`` can give a balanced string; ``force_unbalanced`` then flips
    one character instead.
    """
    if family == "odd":
        length = int(rng.choice(np.arange(1, MAX_PARENS, 2)))
        return _to_strings(rng.choice(np.array([1, -1], dtype=np.int8), size=(1, length)))[0]
    if family == "a_close_open_b":
        total = int(rng.choice(np.arange(0, MAX_PARENS - 1, 2)))
        len_a = 2 * int(rng.integers(0, total // 2 + 1))
        a = random_balanced(len_a, 1, rng)[0]
        b = random_balanced(total - len_a, 1, rng)[0]
        return _to_strings(np.concatenate([a, [-1, 1], b])[None, :])[0]
    steps = random_balanced(int(rng.choice(EVEN_LENGTHS)), 1, rng)[0].copy()
    if family == "swap":
        i = int(rng.integers(0, len(steps) - 1))
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    elif family == "end":
        k = int(rng.integers(1, min(4, len(steps)) + 1))
        ends = slice(0, k) if rng.random() < 0.5 else slice(len(steps) - k, len(steps))
        steps[ends] = rng.choice(np.array([1, -1], dtype=np.int8), size=k)
    if family == "flip" or (force_unbalanced and _balanced_rows(steps[None])[0]):
        steps[int(rng.integers(0, len(steps)))] *= -1
    return _to_strings(steps[None, :])[0]


def _balanced_rows(steps: np.ndarray) -> np.ndarray:
    """Which rows of a +-1 step array are balanced strings."""
    if steps.shape[1] == 0:
        return np.ones(len(steps), dtype=bool)
    depth = np.cumsum(steps, axis=1)
    return (depth.min(axis=1) >= 0) & (depth[:, -1] == 0)


def _to_strings(steps: np.ndarray) -> list[str]:
    chars = np.where(steps > 0, ord("("), ord(")")).astype(np.uint8)
    return [row.tobytes().decode("ascii") for row in chars]


def _check_n(n: int) -> None:
    if not isinstance(n, int | np.integer) or n < 1:
        raise BracketLensError(f"the number of strings must be a positive integer, got {n!r}")
