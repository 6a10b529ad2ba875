"""Adversarial search on the course checkpoint: the course's A)(B family, then beating it."""

import pytest

from bracketlens import is_balanced, predict_proba, tokenize
from bracketlens.adversarial import attack, course_family

COURSE_BEST = "(" * 15 + ")" * 15 + ")(" + "(" * 4 + ")" * 4  # i = 30
COURSE_BEST_P = 0.9998560  # the course's published 99.9856%, to the digits we reproduce


def test_course_family_peaks_at_i_30(course_model):
    p = predict_proba(course_model, tokenize(course_family())).tolist()
    assert p.index(max(p)) == 15  # i = 2 * 15
    assert p[15] == pytest.approx(COURSE_BEST_P, abs=1e-6)


def test_first_stage_reproduces_the_course_best(course_model):
    result = attack(course_model, budget=20)
    course = result.stages[0]
    assert course.evaluations == 20 and course.best_unbalanced is not None
    assert course.best_unbalanced.string == COURSE_BEST
    assert course.best_unbalanced.p_balanced == pytest.approx(COURSE_BEST_P, abs=1e-6)


def test_search_beats_the_course_best(course_model):
    result = attack(course_model, budget=10_000, seed=0)
    best = result.best
    assert best is not None and not is_balanced(best.string) and len(best.string) <= 40
    assert best.p_balanced > 0.999856
    # the balanced side: a balanced string the model calls unbalanced
    assert result.balanced and not result.balanced[0].correct


def test_same_seed_same_findings(course_model):
    runs = [attack(course_model, budget=5_000, seed=3) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].to_json() == runs[1].to_json()
