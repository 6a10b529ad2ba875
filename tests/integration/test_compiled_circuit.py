"""`circuit` as a detector on the hand-built model, whose roles are known by construction."""

import pytest

from bracketlens import evaluation_set
from bracketlens.compiled import ROLES, build_compiled
from bracketlens.verify.circuit import verdict_json, verify_circuit


@pytest.fixture(scope="module")
def verdict():
    # 1,000 strings: 500 to localise on, 500 to verify on (~15 s of CPU)
    return verdict_json(verify_circuit(build_compiled(), evaluation_set(1000, seed=5), seed=0))


def test_circuit_names_exactly_the_heads_it_was_built_with(verdict):
    assert verdict["tally_head"] == ROLES["tally_head"] == "0.0"
    assert verdict["read_position"] == ROLES["read_position"] == 1
    assert verdict["elevation_head"] == ROLES["elevation_head"] == "2.0"
    assert verdict["negative_head"] == ROLES["negative_head"] == "2.1"
    assert verdict["mlp_neurons"] == ROLES["mlp_neurons"]


def test_the_role_it_lacks_by_design_is_not_found(verdict):
    assert verdict["start_close_component"] is None
    evidence = verdict["evidence"]["start_close_component"]["evidence"]
    # head 0.0's ablation hides failures on strings starting with '(' just as much
    assert evidence["head 0.0"] > 0.1
    assert evidence["head 0.0 on unbalanced strings starting with '('"] > evidence["head 0.0"] / 2


def test_the_circuit_explains_all_of_the_loss(verdict):
    for share in verdict["loss_recovered"].values():
        assert share == pytest.approx(1.0, abs=0.01)
