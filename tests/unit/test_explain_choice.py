"""How explain picks the locations that get rotations and the patch each model keeps."""

from __future__ import annotations

import numpy as np
import pytest

from bracketlens import evaluation_set
from bracketlens.algorithms.causal import MODELS
from bracketlens.algorithms.choice import choice_score, merge_ranked, top_locations
from bracketlens.algorithms.conclude import confirmed_models
from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.pairs import (
    KINDS,
    PairCounts,
    Pairs,
    _equal_kinds,
    sample_pairs,
    string_splits,
)
from bracketlens.algorithms.result import ScreenMap
from bracketlens.model.names import act_name


def _pairs(kind: list[int], telling: list[bool]) -> Pairs:
    n = len(kind)
    zeros = np.zeros(n, int)
    return Pairs(zeros, zeros, np.array(kind), zeros, zeros, np.zeros(n, bool),
                 np.zeros(n, bool), np.array(telling))  # fmt: skip


def test_the_choice_is_by_the_worst_kind_and_the_telling_pairs_not_the_mean():
    pairs = _pairs([0, 0, 1, 1, 2, 2], [True, False, False, False, False, False])
    # all right but the one telling pair: every kind's mean is high, the telling IIA is 0
    decision = np.array([False, True, True, True, True, True])
    # one kind at 0.5, telling pair right
    variable = np.array([True, True, True, False, True, True])
    assert choice_score(variable, pairs) > choice_score(decision, pairs)
    # the unchanged pairs' bar is the null flip rate's (IIA 0.95), the others' 0.9
    np.testing.assert_allclose(
        choice_score(np.ones(6, bool), pairs),
        0.05 + 1e-3 * np.mean([0.1, 0.1, 0.05, 0.1]),
        atol=1e-12,
    )


def test_a_patch_that_flips_unchanged_pairs_ranks_below_one_that_misses_a_flip():
    # 20 pairs of each kind: one patch misses 2 of 20 to_balanced pairs (IIA 0.9, on
    # its bar); the other flips 2 of 20 unchanged pairs (IIA 0.9: a 10% null flip rate)
    pairs = _pairs([0] * 20 + [1] * 20 + [2] * 20, [False] * 60)
    misses = np.ones(60, bool)
    misses[20:22] = False
    flips = np.ones(60, bool)
    flips[40:42] = False
    assert choice_score(misses, pairs) > choice_score(flips, pairs)


def _screen(iia: np.ndarray, telling: np.ndarray) -> ScreenMap:
    site_list = (
        Site(act_name("resid_post", 0), None, 0),
        Site(act_name("resid_pre", 1), None, 1),  # the same patch as resid_post 0
        Site(act_name("z", 1), 0, 1),
    )
    return ScreenMap("m", "v", tuple(s.label for s in site_list), (0, 1, 1), ((0,), (1,)),
                     iia, site_list, telling)  # fmt: skip


def test_top_locations_skip_a_second_copy_of_one_patch():
    iia = np.full((3, 2, len(KINDS)), 0.5)
    iia[0, 1] = iia[1, 1] = 1.0  # resid_post 0 @1 == resid_pre 1 @1, the best
    iia[2, 0] = 0.99  # z 1.0 @0: second
    iia[0, 0] = 0.97
    top = top_locations(_screen(iia, np.full((3, 2), 0.5)), 3, n_layers=3)
    assert [(t.site.label, t.positions) for t in top] == [
        ("resid_post 0", (1,)),
        ("z 1.0", (0,)),
        ("resid_post 0", (0,)),
    ]


@pytest.mark.parametrize("n_top", [1, 3])
def test_top_locations_stop_at_unscreened_ones(n_top):
    iia = np.full((3, 2, len(KINDS)), np.nan)
    iia[2, 1] = 0.8
    top = top_locations(_screen(iia, np.full((3, 2), np.nan)), n_top, n_layers=3)
    assert [(t.site.label, t.positions) for t in top] == [("z 1.0", (1,))]


def test_the_confirmed_models_are_those_of_the_best_worst_variable_on_validation():
    rows = [
        ("a", 0.08, False), ("a", -0.02, False),  # worst variable -0.02
        ("b", 0.05, False), ("b", 0.9, True),  # the trivial variable does not count
        ("c", 0.09, False), ("c", float("nan"), False),  # a variable never scored: last
        ("d", 1.0, True),  # only trivial variables: never confirmed
    ]  # fmt: skip
    assert confirmed_models(rows, 2) == {"b", "a"}
    assert confirmed_models(rows, 10) == {"a", "b", "c"}
    assert confirmed_models(rows, 0) == frozenset()


def test_more_test_pairs_leave_the_train_and_validation_pairs_as_they_are():
    data = evaluation_set(600, seed=5)
    tokens, groups = data.tokens.numpy(), data.failure_groups.numpy()
    causal = MODELS["elevation_and_negative"]
    split_of = string_splits(len(data), np.random.default_rng(0))
    drawn = [
        sample_pairs(causal, causal.variables[1], causal.values(tokens), tokens, groups,
                     split_of, PairCounts(train=8, validation=8, test=test),
                     np.random.default_rng(4))
        for test in (8, 24)
    ]  # fmt: skip
    for split in ("train", "validation"):
        a, b = (d.in_split(split) for d in drawn)
        np.testing.assert_array_equal(a.base, b.base)
        np.testing.assert_array_equal(a.source, b.source)
    assert len(drawn[1].in_split("test")) > len(drawn[0].in_split("test"))


def test_each_test_pair_is_drawn_once_and_train_pairs_may_repeat():
    """A test pair drawn twice would count one outcome twice in a guard's bound. A small
    set with a large quota draws many repeats."""
    data = evaluation_set(300, seed=5)
    tokens, groups = data.tokens.numpy(), data.failure_groups.numpy()
    causal = MODELS["elevation_and_negative"]
    split_of = string_splits(len(data), np.random.default_rng(0))
    pairs = sample_pairs(causal, causal.variables[1], causal.values(tokens), tokens, groups,
                         split_of, PairCounts(train=200, validation=8, test=200),
                         np.random.default_rng(4))  # fmt: skip
    test, train = pairs.in_split("test"), pairs.in_split("train")
    assert len(test) > 100
    assert len(set(zip(test.base, test.source, strict=True))) == len(test)
    assert len(set(zip(train.base, train.source, strict=True))) < len(train)


def test_test_pairs_spread_over_bases_and_keep_each_bases_share_of_the_draw():
    # base 0 is half the draw; bases 1-100 share the other half, one pair each
    base = np.concatenate([np.zeros(100, int), np.arange(1, 101)])
    rng = np.random.default_rng(0)
    base = base[rng.permutation(200)]
    source = np.arange(200) + 1000
    kind, telling = np.zeros(200, int), np.zeros(200, bool)
    label = base_label = np.ones(200, bool)
    for seed in range(5):
        got = _equal_kinds(base, source, kind, label, base_label, telling, quota=20,
                           spread=np.random.default_rng(seed))  # fmt: skip
        assert len(got[0]) == 20
        assert (got[0] == 0).sum() == 10  # half of 20: its share, exactly
        assert len(np.unique(got[0][got[0] != 0])) == 10  # the rest on 10 distinct bases
        first = np.flatnonzero(base == 0)[:10]  # base 0's first drawn pairs
        assert set(got[1][got[0] == 0]) == set(source[first])
    # shares that are not whole: 7 pairs from bases at 3/6, 2/6 and 1/6 of the draw give
    # 3 or 4, 2 or 3, and 1 or 2, 7 in all
    base = np.array([5, 5, 5, 6, 6, 7])
    for seed in range(20):
        got = _equal_kinds(np.tile(base, 4), np.arange(24), np.zeros(24, int), np.ones(24, bool),
                           np.ones(24, bool), np.zeros(24, bool), quota=7,
                           spread=np.random.default_rng(seed))[0]  # fmt: skip
        counts = [(got == b).sum() for b in (5, 6, 7)]
        assert sum(counts) == 7 and counts[0] in (3, 4) and counts[1] in (2, 3)
        assert counts[2] in (1, 2)


def test_merged_groups_give_each_group_its_best_location_once():
    site = [Site(act_name("resid_post", 0), None, 0), Site(act_name("resid_pre", 1), None, 1),
            Site(act_name("z", 1), 0, 1), Site(act_name("resid_mid", 1), None, 1)]  # fmt: skip
    first = [Location(site[0], (1,)), Location(site[2], (0,))]
    second = [Location(site[1], (1,)), Location(site[3], (0, 1))]  # its best is first's best
    third = [Location(site[3], (2,)), Location(site[2], (3,))]
    merged = merge_ranked([first, second, third], n_layers=3)
    assert [(m.site.label, m.positions) for m in merged] == [
        ("resid_post 0", (1,)),
        ("resid_mid 1", (2,)),
        ("z 1.0", (0,)),
        ("resid_mid 1", (0, 1)),
    ]
    assert merge_ranked([first], n_layers=3) == first


def test_the_closest_model_is_the_one_that_misses_by_least():
    from bracketlens.algorithms.conclude import _closest, shortfall
    from bracketlens.algorithms.result import ModelScore
    from bracketlens.stats import Estimate

    def score(name: str, low: float, margin: dict) -> ModelScore:
        return ModelScore(name, "", Estimate(0.96, low, 0.97, 100), {}, ("v",), margin=margin)

    near = score("near", 0.95, {"iia": 0.06, "null_flip_rate": -0.0001})
    far = score("far", 0.96, {"iia": 0.07, "null_flip_rate": -0.03})  # higher IIA bound
    untested = score("untested", 0.97, {"iia": 0.08, "null_flip_rate": None})
    assert shortfall(near) == pytest.approx(0.0001) and shortfall(far) == pytest.approx(0.03)
    assert shortfall(untested) == float("inf")
    assert _closest([], (far, untested, near), [])["model"] == "near"


def test_the_mean_iia_interval_widens_for_pairs_that_share_strings():
    from bracketlens.algorithms.result import PairOutcomes, pooled_estimate

    rng = np.random.default_rng(0)
    kind = np.repeat([0, 1, 2], 200)
    bases = rng.permutation(600) // 20  # 30 bases of 20 pairs, each base's pairs alike
    correct = rng.random(30)[bases] < 0.9
    own = PairOutcomes(correct, kind, np.arange(600), np.arange(600, 1200))
    shared = PairOutcomes(correct, kind, bases, np.arange(600, 1200))
    alone, together = pooled_estimate([own], seed=0), pooled_estimate([shared], seed=0)
    assert alone.value == together.value
    assert together.high - together.low > 2 * (alone.high - alone.low)
    assert 0.0 <= together.low < alone.low and alone.high < together.high <= 1.0
