"""The allowed ranges of seeds, sample sizes and input files, checked once at the boundary.

This module imports nothing heavy, so that the command line can check its
arguments (and answer ``--help``) before torch loads. Each check raises
:class:`~bracketlens.errors.BracketLensError` with a message that states the range.
"""

from __future__ import annotations

import numbers

from bracketlens.errors import BracketLensError

MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which training uses, takes no more
MAX_STRINGS = 2_000_000  # tokens alone take 336 bytes a string; the analysis about 4 KB
MAX_DATA_BYTES = 64 * 2**20  # about 2,000,000 course-style records
MAX_CHECKPOINT_BYTES = 2**30  # read whole into memory; our models are about 300 KB
MAX_JSON_DEPTH = 2  # a list of [string, label] pairs, or of {"string": ...} objects
MAX_BUDGET = 5_000_000  # attack: every scored string is kept to score it only once
MAX_STEPS = 1_000_000  # training steps (the bundled model took 11,000)
MAX_MODELS = 1_000  # seeds trained by `bracketlens seeds`
MIN_GROUP_SAMPLE = 30  # strings per failure group below which bootstrap intervals degenerate


def check_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an int if it is a whole number in ``low..high``; else a one-line error.

    Args:
        value: the number to check (bools are refused: ``True`` is not a seed).
        name: what it is, as the user knows it (``"--seed"``, ``"seed"``).
        low: the smallest allowed value.
        high: the largest allowed value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BracketLensError(
            f"{name} must be a whole number from {low:,} to {high:,}; got {value!r}"
        )
    if not low <= int(value) <= high:
        raise BracketLensError(
            f"{name} must be a whole number from {low:,} to {high:,}; got {int(value):,}"
        )
    return int(value)


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed in ``0..2**32 - 1``, the range every random generator here accepts."""
    return check_int(seed, name, 0, MAX_SEED)


def check_n_strings(n: object, name: str = "the number of strings") -> int:
    """A sample size in ``1..MAX_STRINGS``."""
    return check_int(n, name, 1, MAX_STRINGS)
