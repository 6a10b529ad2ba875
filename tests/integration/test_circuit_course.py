"""Causal verification on the course checkpoint (issue #8)."""

import pytest

from bracketlens.circuits import Roles
from bracketlens.verify.circuit import verdict_json, verify_circuit
from bracketlens.verify.scrub import scrub_elevation


@pytest.fixture(scope="module")
def verdict(course_model, course_data):
    return verify_circuit(course_model, course_data[:4000], seed=0)


def test_roles_and_loss_recovered(verdict):
    result = verdict_json(verdict)
    assert (result["elevation_head"], result["negative_head"], result["tally_head"]) == (
        "2.0",
        "2.1",
        "0.0",
    )
    assert result["read_position"] == 1
    recovered = result["loss_recovered"]
    assert recovered["total_elevation"] >= 0.95
    assert recovered["negative"] >= 0.95
    assert recovered["all"] >= 0.95


def test_controls_recover_little(verdict):
    assert verdict.elevation.recovered("control")["all"] < 0.5
    assert verdict.negative.recovered("control")["all"] < 0.5


def test_elevation_scrub_is_seeded(course_model, course_data):
    data = course_data[:1000]
    a = scrub_elevation(course_model, data, Roles(), seed=3)
    b = scrub_elevation(course_model, data, Roles(), seed=3)
    assert a.loss_hypothesis == b.loss_hypothesis
