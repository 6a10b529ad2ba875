import numpy as np
import pytest

from bracketlens import BracketLensError, evaluation_set
from bracketlens.circuits.elevation import Roles
from bracketlens.interventions.ablate import clean_run
from bracketlens.interventions.scrub import (
    ScrubResult,
    Site,
    matched_donors,
    resample_test,
    scrub_all,
    scrub_both,
    scrub_elevation,
    scrub_negative,
    scrub_slices,
)

DATA = evaluation_set(120, seed=4)


def test_matched_donors_share_the_key_and_never_self_donate_in_groups():
    keys = np.array([[0], [1], [0], [1], [0], [2]])
    donors = matched_donors(keys, np.random.default_rng(0))
    assert all((keys[donors] == keys).all(axis=1))
    assert donors[5] == 5  # alone in its group
    assert all(donors[i] != i for i in range(5))
    assert sorted(donors.tolist()) == list(range(6))  # a permutation


def test_recovered_formula():
    r = ScrubResult("h", "a", {"all": 0.1}, {"all": 0.2}, {"all": 0.5}, {"all": 0.45})
    assert r.recovered()["all"] == pytest.approx((0.5 - 0.2) / (0.5 - 0.1))
    assert r.recovered("control")["all"] == pytest.approx((0.5 - 0.45) / 0.4)


def test_a_feature_that_identifies_each_string_recovers_everything(random_model):
    identity = np.arange(len(DATA))[:, None]
    site = Site("blocks.2.attn.hook_result", 0, 0, identity)
    result = resample_test(random_model, DATA, [site], "identity", seed=0)
    assert result.loss_hypothesis == pytest.approx(result.loss_model, abs=1e-6)
    assert result.recovered()["all"] == pytest.approx(1.0, abs=1e-4)


def test_recovered_interval_resamples_strings(random_model):
    site = Site("blocks.2.attn.hook_v", 0, 1, np.zeros((len(DATA), 1), dtype=np.int64))
    result = resample_test(random_model, DATA, [site], "constant feature", seed=0)
    ci = result.recovered_interval("all")
    assert ci.value == pytest.approx(result.recovered()["all"], abs=1e-9)
    assert ci.low <= ci.value <= ci.high and ci.n == len(DATA)
    balanced = result.recovered_interval("balanced")
    assert balanced.n == int(DATA.labels.sum())
    with pytest.raises(BracketLensError, match="unknown failure group"):
        result.recovered_interval("nonsense")
    with pytest.raises(BracketLensError, match="per-string"):
        ScrubResult("h", "a", {}, {}, {}, {}).recovered_interval()


def test_the_tests_share_the_ablations_clean_pass(random_model):
    """scrub_all on a clean run that kept scrub_slices gives each test's own numbers."""
    roles = Roles(2, 0, 1, 0)
    clean = clean_run(random_model, DATA, keep=scrub_slices(roles, (2, 1)))
    shared = scrub_all(random_model, DATA, roles, (2, 1), seed=3, clean=clean)
    alone = [
        scrub_elevation(random_model, DATA, roles, seed=3),
        scrub_negative(random_model, DATA, 2, 1, seed=3),
        scrub_both(random_model, DATA, roles, (2, 1), seed=3),
    ]
    assert [r.hypothesis for r in shared] == [r.hypothesis for r in alone]
    for mine, theirs in zip(shared, alone, strict=True):
        assert mine.loss_hypothesis == pytest.approx(theirs.loss_hypothesis, abs=1e-6)
        assert mine.loss_random == pytest.approx(theirs.loss_random, abs=1e-6)
    assert scrub_all(random_model, DATA, None, None) == []


@pytest.mark.parametrize(
    "places",
    [
        [("blocks.1.attn.hook_v", 0, 3)],  # a value patch: a rank-one change of z
        [("blocks.2.attn.hook_result", 1, 0)],  # a head's output at position 0
        [("blocks.2.attn.hook_v", 0, 1), ("blocks.2.attn.hook_result", 1, 0)],  # one block
        [("blocks.1.attn.hook_v", 1, 2), ("blocks.2.attn.hook_result", 1, 0)],  # two
    ],
)
def test_starting_at_the_mlp_half_gives_the_whole_runs_losses(random_model, places, monkeypatch):
    """Runs that start at the first site's block's MLP half, with the sites there
    patched in the residual stream, lose what runs from the block's input with every
    site hooked lose (the same donors)."""
    import bracketlens.interventions.scrub as scrub

    rng = np.random.default_rng(3)
    sites = [
        Site(hook, head, pos, rng.integers(0, 3, (len(DATA), 1))) for hook, head, pos in places
    ]
    for kept in (None, "clean"):  # the test's own pass, and the ablations' clean pass
        clean = None
        if kept:
            clean = scrub.clean_activations(
                random_model,
                DATA,
                [sites],
                clean_run(random_model, DATA, keep=scrub._slices_read([sites])),
            )
        fast = resample_test(random_model, DATA, sites, "h", seed=2, clean=clean)
        with monkeypatch.context() as m:
            m.setattr(scrub, "_first_sites", lambda s, f=scrub._first_sites: (*f(s)[:2], False))
            slow = resample_test(random_model, DATA, sites, "h", seed=2)
        for key in ("hypothesis", "random", "control"):
            np.testing.assert_allclose(
                fast.per_string[key], slow.per_string[key], atol=2e-5, rtol=1e-4
            )
