"""The course checkpoint loads unchanged and reproduces the course's published numbers."""

import pytest
import torch

from bracketlens import evaluate, predict_proba, tokenize
from tests.conftest import COURSE_WEIGHTS
from tests.unit.test_transformer import reference_forward


def test_logits_match_a_direct_forward_on_the_state_dict(course_model, course_data):
    state = torch.load(COURSE_WEIGHTS, map_location="cpu", weights_only=True)
    tokens = course_data.tokens[:2000]
    torch.testing.assert_close(
        course_model(tokens), reference_forward(state, tokens), atol=1e-5, rtol=0
    )


def test_seven_wrong_on_all_course_strings(course_model, course_data):
    result = evaluate(course_model, course_data)
    assert result.n == 100_000
    assert result.n_wrong == 7
    assert result.accuracy == pytest.approx(0.99993, abs=1e-9)


@pytest.mark.parametrize(
    ("parens", "p_balanced"), [("()()", 0.999986), ("(())", 0.999989), ("))((", 0.000005)]
)
def test_published_probabilities(course_model, parens, p_balanced):
    got = predict_proba(course_model, tokenize(parens)).item()
    assert got == pytest.approx(p_balanced, abs=2e-5)
