"""`circuit` as a detector on the hand-built model, whose roles are known by construction."""

import math

import pytest

from bracketlens import evaluation_set
from bracketlens.compiled import ROLES, build_compiled
from bracketlens.pipeline import run


@pytest.fixture(scope="module")
def verdict():
    # what `bracketlens circuit` runs, on 1,000 strings: 500 to localise on, 500 held out
    analysis = run(
        build_compiled(),
        evaluation_set(1000, seed=5),
        seed=0,
        stages=("interventions", "mean_ablation"),
    )
    return analysis.to_json()


def test_circuit_names_exactly_the_heads_it_was_built_with(verdict):
    found = verdict["localisation"]
    assert found["tally_head"]["location"] == ROLES["tally_head"] == "0.0"
    assert found["read_position"]["location"] == str(ROLES["read_position"]) == "1"
    assert found["elevation_head"]["location"] == ROLES["elevation_head"] == "2.0"
    assert found["negative_head"]["location"] == ROLES["negative_head"] == "2.1"
    assert found["mlp_neurons"] == ROLES["mlp_neurons"]


def test_the_role_it_lacks_by_design_is_not_found(verdict):
    start_close = verdict["localisation"]["start_close_component"]
    assert start_close["location"] is None
    evidence = start_close["evidence"]
    # head 0.0's ablation hides failures on strings starting with '(' just as much
    assert evidence["head 0.0"] > 0.1
    assert evidence["head 0.0 on unbalanced strings starting with '('"] > evidence["head 0.0"] / 2


def test_the_circuit_explains_all_of_the_loss(verdict):
    for test in verdict["resampling_tests"]:
        for group, share in test["loss_recovered"].items():
            if not math.isnan(share):  # a group with no string in the held-out half
                assert share == pytest.approx(1.0, abs=0.01), (test["headline_group"], group)
