"""Intervals: the bootstrap (the same as resampling the values themselves, at a fraction of the cost), and shares whose outcomes share strings."""

from __future__ import annotations

import numpy as np
import pytest

from bracketlens.stats import (
    LEVEL,
    bootstrap,
    bootstrap_ratio,
    clustered_share,
    design_effect,
    wilson,
)


def gathered(values: np.ndarray, statistic, n_resamples: int = 1000, seed: int = 0):
    """The textbook percentile bootstrap: gather each resample's values, then its means."""
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.concatenate(
        [values[rng.integers(0, n, size=(100, n))].mean(axis=1) for _ in range(n_resamples // 100)]
    )
    alpha = (1 - LEVEL) / 2
    return np.quantile(statistic(means), [alpha, 1 - alpha])


def test_mean_interval_equals_resampling_the_values():
    values = np.random.default_rng(1).normal(2.0, 3.0, size=777)
    got = bootstrap(values, seed=5)
    low, high = gathered(values, lambda m: m, seed=5)
    assert got.value == pytest.approx(values.mean(), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert got.n == 777


def test_ratio_interval_equals_resampling_the_pairs():
    rng = np.random.default_rng(2)
    den = rng.normal(1.0, 0.5, size=400)
    num = 0.7 * den + rng.normal(0, 0.1, size=400)
    got = bootstrap_ratio(num, den)
    low, high = gathered(np.stack([num, den], 1), lambda m: m[:, 0] / m[:, 1])
    assert got.value == pytest.approx(num.mean() / den.mean(), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert got.low < 0.7 < got.high


def test_ratio_of_vanishing_denominators_is_nan_not_huge():
    got = bootstrap_ratio(np.ones(50), np.zeros(50))
    assert np.isnan(got.value) and np.isnan(got.low) and np.isnan(got.high)


def test_statistic_sees_means_with_the_values_trailing_shape():
    values = np.random.default_rng(3).random((300, 2, 3))
    seen = []

    def first_cell(means: np.ndarray) -> np.ndarray:
        seen.append(means.shape[1:])
        return means[:, 1, 2]

    got = bootstrap(values, first_cell, n_resamples=200)
    assert seen == [(2, 3), (2, 3)]
    assert got.value == pytest.approx(values[:, 1, 2].mean(), rel=1e-12)
    assert got.low < got.value < got.high


def test_no_strings_gives_nan():
    got = bootstrap(np.array([]))
    assert got.n == 0 and np.isnan(got.value)


@pytest.mark.parametrize("shape", [(7,), (433, 3), (1200, 2)])
def test_resample_means_are_each_resamples_own_sums_bit_for_bit(shape):
    """Each resample's mean is the 1-D sum of its strings' values over ``n``, bit for bit:
    the intervals do not move with how the sums are batched."""
    values = np.random.default_rng(4).normal(size=shape)
    n, rng = len(values), np.random.default_rng(9)
    drawn = np.concatenate([rng.integers(0, n, size=(100, n), dtype=np.int32) for _ in range(3)])
    columns = values.reshape(n, -1)
    means = np.array(
        [[columns[row, k].sum() / n for k in range(columns.shape[1])] for row in drawn]
    )
    statistic = (lambda m: m) if len(shape) == 1 else (lambda m: m[:, -1] - m[:, 0])
    alpha = (1 - LEVEL) / 2
    want = np.quantile(statistic(means.reshape(-1, *shape[1:])), [alpha, 1 - alpha])
    got = bootstrap(values, statistic, n_resamples=300, seed=9)
    assert (got.low, got.high) == (want[0], want[1])


def test_a_share_of_outcomes_with_strings_of_their_own_has_wilsons_interval() -> None:
    hits = np.random.default_rng(0).random(300) < 0.9
    got = clustered_share(hits, (np.arange(300), np.arange(300)))
    want = wilson(int(hits.sum()), 300)
    assert (got.value, got.n) == (want.value, want.n)
    assert got.low == pytest.approx(want.low, abs=1e-12)
    assert got.high == pytest.approx(want.high, abs=1e-12)


@pytest.mark.parametrize("way", [0, 1])
def test_shared_strings_widen_the_interval_to_cover_as_promised(way: int) -> None:
    # each of 30 strings (bases, or sources) has its own success rate, 0.9 on average, and is in
    # 20 pairs; the other string of each pair is its own. Wilson counts 600 independent
    # outcomes and misses the true share often; the clustered interval covers it about
    # 95% of the time
    rng = np.random.default_rng(1)
    shared = np.repeat(np.arange(30), 20)
    own = np.arange(600)
    covered = {"wilson": 0, "clustered": 0}
    runs = 400
    for _ in range(runs):
        rate = rng.beta(9.0, 1.0, 30)  # mean 0.9
        hits = rng.random(600) < rate[shared]
        strings = (shared, own) if way == 0 else (own, shared)
        for name, est in (
            ("wilson", wilson(int(hits.sum()), 600)),
            ("clustered", clustered_share(hits, strings)),
        ):
            covered[name] += est.low <= 0.9 <= est.high
    assert covered["wilson"] / runs < 0.85  # 0.77 here
    assert 0.9 <= covered["clustered"] / runs <= 0.99  # 0.94 here


def test_design_effect_counts_clusters_in_either_way() -> None:
    influence = np.tile([1.0, -1.0], 50)
    alone = (np.arange(100), np.arange(100))
    assert design_effect(influence, alone) == 1.0
    # pairs (2i, 2i + 1) share a base and cancel: never taken below 1
    assert design_effect(influence, (np.arange(100) // 2, np.arange(100))) == 1.0
    # ten same-signed outcomes per source: about ten times the variance
    same = np.repeat([1.0, -1.0], 50)
    effect = design_effect(same, (np.arange(100), np.arange(100) // 10))
    assert 9.0 < effect < 11.5
    assert design_effect(np.zeros(10), alone[:1]) == 1.0
