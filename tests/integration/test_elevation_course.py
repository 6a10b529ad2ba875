"""The total elevation circuit on the course checkpoint, first 5,000 strings."""

import pytest
import torch

from bracketlens.circuits import Roles, analyse_elevation
from bracketlens.circuits.heads import ov_matrix


@pytest.fixture(scope="module")
def circuit(course_model, course_data):
    return analyse_elevation(course_model, course_data[:5000], Roles(2, 0, 1, 0))


def test_head_20_reads_position_1(circuit):
    row = circuit.attention_from_0
    # an independent implementation measures 0.573 on key 1 and at most 0.077 elsewhere
    assert 0.4 <= row[1] <= 0.7
    assert row[1] == pytest.approx(0.573, abs=0.002)
    assert row[2:].max() < 0.1


def test_tally_vectors_are_opposite(circuit):
    assert circuit.tally.cosine == pytest.approx(-0.9974, abs=0.002)


def test_mlp_input_cosines(circuit):
    assert circuit.mlp_cos2[0] == pytest.approx(0.1239, abs=0.01)
    assert circuit.mlp_cos2[1] == pytest.approx(0.1301, abs=0.01)
    assert circuit.random_cos2 == pytest.approx(1 / 56, abs=0.003)


def test_mlps_carry_the_elevation_signal(circuit):
    claim = circuit.claims[1]
    assert claim.holds
    medians = claim.evidence
    top_two = sorted(medians, key=medians.get, reverse=True)[:2]
    assert set(top_two) == {"mlp 0", "mlp 1"}


def test_every_claim_holds(circuit):
    assert all(c.holds for c in circuit.claims), [c.text for c in circuit.claims if not c.holds]


def test_neuron_taxonomy_agrees_with_the_course(circuit):
    kinds = {c.name: c.kind for layer in (0, 1) for c in circuit.neuron_classes[layer]}
    for name in ("1.53", "1.39", "1.8"):
        assert kinds[name] == "p > 1/2", name
    for name in ("0.21", "0.7"):
        assert kinds[name] == "p < 1/2", name
    for name in ("1.10", "1.3"):
        assert kinds[name] == "p != 1/2", name


def test_low_memory_projection_matches_full(course_model, course_data):
    from bracketlens.attribution.neurons import out_by_neuron, out_by_neuron_in_direction

    tokens = course_data[:1000].tokens
    direction = torch.randn(56)
    full = out_by_neuron(course_model, tokens, 1, position=1) @ direction
    low = out_by_neuron_in_direction(course_model, tokens, 1, direction, 1)
    torch.testing.assert_close(low, full, atol=1e-5, rtol=0)
    assert ov_matrix(course_model, 2, 0).shape == (56, 56)
