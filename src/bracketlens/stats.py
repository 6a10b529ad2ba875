"""Confidence intervals: bootstrap for numbers estimated from strings, Wilson for fractions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

N_BOOTSTRAP = 1000
_CHUNK = 100  # resamples drawn at once
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic with a percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n}

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap of a function of the means over the first axis of ``values``.

    Every statistic here is a function of per-string means (a mean, a ratio of means,
    a mean of per-kind ratios), so each resample is reduced to its means as soon as it
    is drawn: nothing of shape ``[resamples, n, ...]`` is ever gathered.

    Args:
        values: per-string values ``[n, ...]``.
        statistic: maps the resamples' means ``[resamples, ...]`` to ``[resamples]``;
            default: the mean itself (of a 1-D array).
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    stat = statistic or (lambda means: means)
    columns = np.ascontiguousarray(values.reshape(n, -1).T)  # [k, n]: each gather is 1-D
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n_resamples, _CHUNK):
        # string indices, a resample a row (int32: the same draws as int64, drawn twice
        # as fast); the resamples' means, a column at a time: each column's values
        # gathered [resamples, n] and summed along n, the same pairwise sums as one 1-D
        # sum per resample (gathering [n, k] rows and summing across them is 3-4x slower)
        size = (min(_CHUNK, n_resamples - start), n)
        drawn = rng.integers(0, n, size=size, dtype=np.int32 if n < 2**31 else np.int64)
        means.append(np.stack([column[drawn].sum(axis=1) / n for column in columns], axis=1))
    estimates = stat(np.concatenate(means).reshape(-1, *values.shape[1:]))
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(estimates, [alpha, 1 - alpha])
    return Estimate(float(stat(values.mean(axis=0)[None])[0]), float(low), float(high), n)


def bootstrap_ratio(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """``mean(numerator) / mean(denominator)`` over paired per-string values, with an interval.

    A resample whose denominator's mean is (near) 0 gives NaN rather than a huge ratio.
    """

    def ratio(means: np.ndarray) -> np.ndarray:
        num, den = means.T  # each [resamples]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(den) > 1e-9, num / den, np.nan)

    return bootstrap(np.stack([numerator, denominator], axis=1), ratio)


def wilson(successes: int, n: int, level: float = LEVEL) -> Estimate:
    """The fraction ``successes / n`` with its Wilson score interval.

    Unlike the normal approximation, the interval stays inside [0, 1] and is not
    empty at 0 or n successes, which matters for a handful of seeds.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(centre - half, 0.0), min(centre + half, 1.0), n)
