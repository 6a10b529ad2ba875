"""Causal verification on the course checkpoint."""

import pytest

from bracketlens.circuits import Roles
from bracketlens.interventions.scrub import scrub_elevation
from bracketlens.pipeline import run
from bracketlens.plan import COMMAND_STAGES


@pytest.fixture(scope="module")
def verdict(course_model, course_data):
    return run(course_model, course_data[:4000], seed=0, stages=COMMAND_STAGES["circuit"])


def test_roles_and_loss_recovered(verdict):
    result = verdict.to_json()
    found = result["localisation"]
    roles = [found[k]["location"] for k in ("elevation_head", "negative_head", "tally_head")]
    assert roles == ["2.0", "2.1", "0.0"]
    assert found["read_position"]["location"] == "1"
    recovered = [t["loss_recovered"][t["headline_group"]] for t in result["resampling_tests"]]
    assert [t["headline_group"] for t in result["resampling_tests"]] == [
        "just total elevation failure",
        "just neg failure",
        "all",
    ]
    assert min(recovered) >= 0.95
    assert result["split"] == {
        "seed": 0,
        "n": 4000,
        "n_fit": 2000,
        "n_held_out": 2000,
        "n_causal": 2000,
    }
    assert result["elevation_circuit"] is None  # the circuit command skips the analyses


def test_controls_recover_little(verdict):
    elevation, negative, _ = verdict.scrubs
    assert elevation.recovered("control")["all"] < 0.5
    assert negative.recovered("control")["all"] < 0.5


def test_elevation_scrub_is_seeded(course_model, course_data):
    data = course_data[:1000]
    a = scrub_elevation(course_model, data, Roles(), seed=3)
    b = scrub_elevation(course_model, data, Roles(), seed=3)
    assert a.loss_hypothesis == b.loss_hypothesis
