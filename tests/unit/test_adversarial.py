"""Adversarial search on a random model: budget, ground truth, ranking, reproducibility."""

import json
import math

import numpy as np
import pytest

from bracketlens import BracketLensError, is_balanced, predict_proba, tokenize
from bracketlens.adversarial import AttackResult, Finding, attack, course_family, neighbours
from bracketlens.adversarial import scoring as scoring_module
from bracketlens.adversarial.families import (
    DIP_JOINTS,
    balanced_family,
    joined,
    perturb,
    shapes,
    swaps,
    tallest,
)
from bracketlens.adversarial.result import sigmoid
from bracketlens.adversarial.scoring import Scorer
from bracketlens.data import MAX_PARENS


def _all_findings(result: AttackResult) -> list[Finding]:
    bests = [f for s in result.stages for f in (s.best_unbalanced, s.best_balanced) if f]
    return [*result.unbalanced, *result.balanced, *bests]


# --- families ---------------------------------------------------------------------------


def test_course_family_is_the_course_construction():
    family = course_family()
    assert len(family) == 20
    assert family[15] == "(" * 15 + ")" * 15 + ")(" + "(" * 4 + ")" * 4
    assert all(len(s) == 40 and not is_balanced(s) for s in family)
    assert all(s.count("(") == s.count(")") for s in family)


@pytest.mark.parametrize("n", [0, 2, 10, 40])
def test_shapes_are_balanced_distinct_and_of_the_asked_length(n):
    strings = shapes(n, max_blocks=3)
    assert tallest(n) in strings
    assert len(set(strings)) == len(strings)
    assert all(len(s) == n and is_balanced(s) for s in strings)
    assert shapes(n + 1, max_blocks=3) == []


def test_balanced_family_and_joints():
    family = balanced_family(12, max_blocks=2)
    assert all(is_balanced(s) and len(s) <= 12 for s in family)
    dips = joined(lambda n: shapes(n, 2), DIP_JOINTS, 20)
    assert dips and all(len(s) == 20 and not is_balanced(s) for s in dips)
    assert all(s.count("(") == s.count(")") for s in dips)


def test_neighbours_are_single_edits_within_the_context():
    s = "(()))(" * 6 + "()"  # 38 parens: insertions still fit, once
    near = neighbours(s)
    assert len(set(near)) == len(near) and s not in near
    assert {len(t) for t in near} == {36, 38, 40}
    assert set(swaps(s)) <= set(near)
    assert all(len(t) <= MAX_PARENS for t in neighbours("()" * 20))


def test_perturb_is_deterministic_for_a_seed():
    kicks = [perturb("(())()", np.random.default_rng(3), 4) for _ in range(2)]
    assert kicks[0] == kicks[1]


def test_sigmoid_is_stable_at_both_ends():
    assert sigmoid(800.0) == 1.0 and sigmoid(-800.0) == 0.0
    assert sigmoid(8.845997) == pytest.approx(0.99985606, abs=1e-8)


# --- scoring ----------------------------------------------------------------------------


def test_scorer_scores_each_string_once_within_its_limit(random_model):
    scorer = Scorer(random_model, budget=5, stages=("a", "b"))
    first = scorer.score(["()", ")(", "()", "(("], "a", limit=2)
    assert [f.string for f in first] == ["()", ")("]
    again = scorer.score(["()", ")(", "((", "))", "(())", "()()"], "b")
    assert [f.string for f in again] == ["((", "))", "(())"]
    assert scorer.used == 5 and scorer.remaining == 0
    assert scorer.score(["((((", "))))"], "b") == []
    assert [(s.name, s.evaluations) for s in scorer.summaries()] == [("a", 2), ("b", 3)]


# --- the whole attack -------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 19, 20, 21, 137, 1500])
def test_budget_is_never_exceeded(random_model, monkeypatch, budget):
    scored: list[int] = []
    real = scoring_module.predict_logits

    def counting(model, tokens, *args, **kwargs):
        scored.append(len(tokens))
        return real(model, tokens, *args, **kwargs)

    monkeypatch.setattr(scoring_module, "predict_logits", counting)
    result = attack(random_model, budget=budget, seed=0)
    assert sum(scored) == result.evaluations == sum(s.evaluations for s in result.stages)
    assert result.evaluations <= budget
    assert result.budget == budget


def test_every_finding_is_verified_against_the_ground_truth(random_model):
    result = attack(random_model, budget=1500, seed=0, top=10)
    findings = _all_findings(result)
    assert result.unbalanced and result.balanced
    assert all(f.label == is_balanced(f.string) for f in findings)
    assert all(not f.label for f in result.unbalanced) and all(f.label for f in result.balanced)
    p = predict_proba(random_model, tokenize([f.string for f in findings]))
    np.testing.assert_allclose([f.p_balanced for f in findings], p.numpy(), atol=1e-6, rtol=0)


def test_findings_are_ranked_by_how_wrong_the_model_is(random_model):
    result = attack(random_model, budget=1500, seed=0, top=10)
    p_unbalanced = [f.p_balanced for f in result.unbalanced]
    p_balanced = [f.p_balanced for f in result.balanced]
    assert len(p_unbalanced) == len(p_balanced) == 10
    assert p_unbalanced == sorted(p_unbalanced, reverse=True)
    assert p_balanced == sorted(p_balanced)
    assert result.best == result.unbalanced[0]
    wrongness = [f.wrongness for f in result.findings(3)]
    assert len(wrongness) == 6 and wrongness == sorted(wrongness, reverse=True)


def test_json_records_have_the_predict_shape(random_model):
    result = attack(random_model, budget=300, seed=0)
    records = json.loads(result.to_json(top=4))
    assert records == result.to_records(top=4)
    assert len(records) == 8
    assert all(set(r) == {"string", "label", "p_balanced"} for r in records)
    assert all(r["label"] == is_balanced(r["string"]) for r in records)


def test_adversarial_accuracy_counts_every_stage(random_model):
    result = attack(random_model, budget=800, seed=0)
    n_correct = sum(s.n_correct for s in result.stages)
    assert result.adversarial_accuracy == pytest.approx(n_correct / result.evaluations, abs=1e-12)
    assert [s.name for s in result.stages] == [
        "course A)(B",
        "structured",
        "beam: unbalanced",
        "beam: balanced",
    ]
    assert all(0 <= s.accuracy <= 1 for s in result.stages if s.evaluations)
    assert math.isnan(attack(random_model, budget=5).stages[-1].accuracy)


def test_same_seed_same_result(random_model):
    first = attack(random_model, budget=1200, seed=7)
    assert attack(random_model, budget=1200, seed=7) == first
    assert first.seed == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be a positive integer"),
        ({"budget": -5}, "budget must be a positive integer"),
        ({"budget": 2.5}, "budget must be a positive integer"),
        ({"budget": True}, "budget must be a positive integer"),
        ({"top": 0}, "top must be a positive integer"),
        ({"beam_width": 0}, "beam_width must be a positive integer"),
    ],
)
def test_bad_arguments_raise(random_model, kwargs, message):
    with pytest.raises(BracketLensError, match=message):
        attack(random_model, **kwargs)
