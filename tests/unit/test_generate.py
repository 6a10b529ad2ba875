import collections

import numpy as np
import pytest

from bracketlens import BracketLensError, evaluation_set, is_balanced, near_miss_set
from bracketlens.data.generate import random_balanced, training_set


def test_evaluation_set_is_pinned_and_seeded():
    a, b = evaluation_set(2000, seed=3), evaluation_set(2000, seed=3)
    assert a.strings == b.strings
    assert a.strings != evaluation_set(2000, seed=4).strings
    assert int(a.labels.sum()) == 1000
    assert all(len(s) % 2 == 0 and 2 <= len(s) <= 40 for s in a.strings)
    assert a.labels.tolist() == [is_balanced(s) for s in a.strings]


def test_evaluation_lengths_are_uniform():
    counts = collections.Counter(len(s) for s in evaluation_set(20_000, seed=0).strings)
    assert sorted(counts) == list(range(2, 41, 2))
    # 20 lengths, 1,000 expected each: 5 standard deviations is about 155
    assert all(abs(c - 1000) < 160 for c in counts.values())


def test_random_balanced_is_uniform_over_dyck_words():
    # length 6 has Catalan(3) = 5 balanced strings, each expected 2,000 times in 10,000
    rng = np.random.default_rng(0)
    steps = random_balanced(6, 10_000, rng)
    words = collections.Counter("".join("(" if x > 0 else ")" for x in row) for row in steps)
    assert len(words) == 5
    assert all(is_balanced(w) for w in words)
    assert all(abs(c - 2000) < 200 for c in words.values())


def test_near_miss_families():
    data = near_miss_set(400, seed=0)
    lengths = [len(s) for s in data.strings]
    assert sum(n % 2 for n in lengths) == 100  # the odd-length family, a quarter
    assert 0.05 < data.labels.float().mean().item() < 0.4  # swaps are sometimes balanced
    assert any(")(" in s for s in data.strings)


def test_training_set_half_balanced_and_varied():
    data = training_set(4000, seed=0)
    assert int(data.labels.sum()) == 2000
    groups = collections.Counter(data.failure_groups.tolist())
    assert all(groups[g] > 200 for g in range(3))  # every failure group is represented


@pytest.mark.parametrize("n", [0, -5])
def test_bad_n(n):
    with pytest.raises(BracketLensError, match="positive integer"):
        evaluation_set(n, seed=0)
