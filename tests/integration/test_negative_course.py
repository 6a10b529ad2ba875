"""What feeds the negative head 2.1 on the course checkpoint, 5,000 strings."""

import pytest

from bracketlens.circuits.negative import negative_feeders
from bracketlens.data.truth import FailureGroup


@pytest.fixture(scope="module")
def medians(course_model, course_data):
    data = course_data[:5000]
    feeders = negative_feeders(course_model, data, 2, 1)
    assert feeders.ln_fit_r2 == pytest.approx(0.970, abs=0.005)  # measured: 0.9699
    return feeders.group_medians(data.failure_groups)


def test_the_mlps_feed_head_21_on_negative_failures(medians):
    # measured medians on strings that only go negative: MLP 1 +7.00, MLP 0 +4.93,
    # embeddings +2.10, head 0.0 -2.11; every other component below 1.3 in size
    group = FailureGroup.NEGATIVE_ONLY.label
    ranked = sorted(medians, key=lambda k: -abs(medians[k][group]))
    assert set(ranked[:2]) == {"mlp 0", "mlp 1"}
    assert medians["mlp 1"][group] == pytest.approx(7.00, abs=0.05)
    assert medians["mlp 0"][group] == pytest.approx(4.93, abs=0.05)


def test_mlp0_pushes_the_other_way_on_elevation_failures(medians):
    # through head 2.1, MLP 0 argues "balanced" when only the total elevation is off
    assert medians["mlp 0"][FailureGroup.ELEVATION_ONLY.label] < -2
    assert abs(medians["mlp 1"][FailureGroup.BALANCED.label]) < 0.5
