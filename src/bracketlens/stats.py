"""Confidence intervals: bootstrap for numbers estimated from strings, Wilson for fractions,
both widened where outcomes share strings (the design effect)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    low, high = _wilson_bounds(successes / n, n, level)
    return Estimate(successes / n, low, high, n)


def _wilson_bounds(p: float, n: float, level: float) -> tuple[float, float]:
    """Wilson's score interval of a share ``p`` seen on ``n`` (not necessarily whole) trials."""
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def design_effect(influence: np.ndarray, clusters: Sequence[np.ndarray]) -> float:
    """How many times its independent-outcome variance a mean's variance is, when the
    outcomes share clusters (at least 1).

    Outcomes that share a string are not independent: an interchange pair with a
    base that the network handles oddly fails with every source it is drawn with.
    The variance of a linear statistic under two-way clustering (each outcome has
    a base string and a source string) is Cameron, Gelbach and Miller's (2011):
    the variance clustered by bases, plus that clustered by sources, minus that
    clustered by (base, source). Each term is the sum over its clusters of the
    squared sum of the outcomes' influence, with the small-sample factor
    G / (G - 1) for G clusters. The result is divided by the variance with every
    outcome its own cluster, and never taken below 1: the interval it widens is
    never narrowed.

    Args:
        influence: each outcome's centred contribution to the statistic, ``[n]``
            (for a share: the outcome minus the share).
        clusters: one ``[n]`` array of cluster ids per way of clustering (for a pair:
            its base and its source string). With two ways, their intersection is
            the third term; with one, there is none.
    """
    influence = np.asarray(influence, dtype=np.float64)
    alone = _clustered_variance(influence, np.arange(len(influence)))
    if not alone > 0:
        return 1.0
    ways = [np.asarray(c) for c in clusters]
    total = sum(_clustered_variance(influence, c) for c in ways)
    if len(ways) == 2:
        both = np.unique(np.stack(ways, axis=1), axis=0, return_inverse=True)[1].ravel()
        total -= _clustered_variance(influence, both)
    elif len(ways) != 1:
        raise ValueError(f"one or two ways of clustering, got {len(ways)}")
    return max(1.0, float(total) / alone)


def _clustered_variance(influence: np.ndarray, cluster: np.ndarray) -> float:
    ids = np.unique(cluster, return_inverse=True)[1].ravel()
    g = int(ids.max()) + 1 if len(ids) else 0
    if g < 2:
        return float(influence.sum() ** 2)
    sums = np.bincount(ids, weights=influence, minlength=g)
    return float((sums**2).sum()) * g / (g - 1)


def clustered_share(
    hits: np.ndarray, clusters: Sequence[np.ndarray], level: float = LEVEL
) -> Estimate:
    """The share of ``hits`` with Wilson's interval at its effective number of outcomes.

    The effective number is ``n`` over the :func:`design_effect` of outcomes that
    share ``clusters`` (Kish's effective sample size): with every outcome in a
    cluster of its own, the interval is :func:`wilson`'s; the more outcomes share a
    string, the wider it gets. ``Estimate.n`` stays the number of outcomes.
    """
    hits = np.asarray(hits, dtype=bool)
    n = len(hits)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    p = float(hits.mean())
    effect = design_effect(hits - p, clusters)
    low, high = _wilson_bounds(p, n / effect, level)
    return Estimate(p, low, high, n)
