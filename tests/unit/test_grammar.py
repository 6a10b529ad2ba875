"""The grammar of bracket variables, the generated causal models, and explain's guards."""

from __future__ import annotations

import numpy as np
import pytest

from bracketlens.algorithms import MODELS
from bracketlens.algorithms.equivalence import equivalent
from bracketlens.algorithms.generate import (
    atom_model,
    found_by_generator,
    generated_models,
    table,
)
from bracketlens.algorithms.grammar import CHECK_ALL_UP_TO, check_tokens, true_labels
from bracketlens.algorithms.guards import MIN_PAIRS, Guard, variable_guards
from bracketlens.data import is_balanced
from bracketlens.data.tokens import OPEN, decode
from bracketlens.stats import Estimate, wilson

TWO_SIDED = ("and", ("not", ("atom", "prefix_negative")), ("not", ("atom", "suffix_positive")))


def test_check_set_holds_every_short_string_and_balanced_long_ones() -> None:
    tokens = check_tokens()
    lengths = (tokens >= OPEN).sum(-1)
    short = np.bincount(lengths[: 2 ** (CHECK_ALL_UP_TO + 1) - 1])
    np.testing.assert_array_equal(short, 2 ** np.arange(CHECK_ALL_UP_TO + 1))
    assert lengths.max() == 40
    sample = np.random.default_rng(0).choice(len(tokens), 500, replace=False)
    import torch

    strings = decode(torch.as_tensor(tokens[sample].astype(np.int64)))
    np.testing.assert_array_equal(true_labels(tokens[sample]), [is_balanced(s) for s in strings])
    long = lengths > 30
    assert true_labels(tokens[long]).mean() > 0.3  # balanced long strings are checked too


def test_every_generated_model_gives_the_true_label_on_the_check_set() -> None:
    tokens = check_tokens()
    truth = true_labels(tokens)
    for model in generated_models().models:
        labels = np.asarray(model.rule(model.values(tokens)), dtype=bool)
        np.testing.assert_array_equal(labels, truth, err_msg=model.name)


def test_the_generator_finds_the_registered_models_and_the_two_sided_one() -> None:
    for name in ("elevation_and_negative", "elevation_negative_shortcuts", "suffix_elevation"):
        assert found_by_generator(MODELS[name]) is not None, name
    two_sided = atom_model("two_sided", TWO_SIDED)
    assert any(equivalent(two_sided, g) for g in generated_models().models)


def test_equivalence_is_by_interchanges_not_by_labels() -> None:
    """Every exact model gives the same labels; interchanges tell them apart."""
    course = MODELS["elevation_and_negative"]
    two_sided = atom_model("two_sided", TWO_SIDED)
    swapped = atom_model("swapped", (TWO_SIDED[0], TWO_SIDED[2], TWO_SIDED[1]))
    assert not equivalent(course, two_sided)
    assert equivalent(two_sided, swapped)  # the same rule, variables in another order


def test_deduplication_counts() -> None:
    g = generated_models()
    assert g.n_rules > g.n_exact >= g.n_kept == len(g.models)
    assert len({m.name for m in g.models}) == len(g.models)
    assert all(not a.shortcut or a.quantity.endswith("paren") for a in table().atoms)


def _guards(correct, kind, telling=None, control=None, flipped=None, decision=False,
            strings=None):  # fmt: skip
    n = len(correct)
    telling = np.ones(n, bool) if telling is None else telling
    control = np.zeros(n, bool) if control is None else control
    flipped = np.zeros(n, bool) if flipped is None else flipped
    strings = (np.arange(n), np.arange(n, 2 * n)) if strings is None else strings
    iia = Estimate(float(correct.mean()), float(correct.mean()) - 0.01, 1.0, n)
    return {g.name: g for g in variable_guards(iia, correct, kind, telling, control, flipped,
                                               decision, strings)}  # fmt: skip


def test_a_guard_on_fewer_than_40_pairs_is_untested_and_fails() -> None:
    few = _guards(np.ones(30, bool), np.zeros(30, int))
    assert few["iia_to_unbalanced"].untested and not few["iia_to_unbalanced"].passes
    many = _guards(np.ones(120, bool), np.zeros(120, int))
    assert not many["iia_to_unbalanced"].untested and many["iia_to_unbalanced"].passes
    assert MIN_PAIRS == 40


def test_guards_use_the_bound_on_the_right_side() -> None:
    kind = np.repeat([0, 1, 2], 100)
    correct = np.ones(300, bool)
    flipped = np.zeros(300, bool)
    flipped[200:203] = True  # 3 of 100 unchanged pairs flip: 0.03, but the upper bound is 0.085
    got = _guards(correct, kind, flipped=flipped)
    assert got["null_flip_rate"].value == pytest.approx(0.03)
    assert got["null_flip_rate"].bound > 0.05 and not got["null_flip_rate"].passes
    assert got["control"].bound <= 0.6 and got["control"].passes
    # a decision-carrying location needs 0.9 on telling pairs, not 0.85
    telling = correct.copy()
    telling[:100] = np.arange(100) < 94
    g = Guard("telling_iia", 0.94, 0.88, 0.85, 100, True)
    assert g.passes and g.margin == pytest.approx(0.03)
    assert _guards(telling, kind, decision=True)["telling_iia"].threshold == 0.9


def test_a_guard_whose_failures_share_bases_has_a_lower_bound() -> None:
    # 400 pairs of one kind, 0.95 correct either way: spread over 400 bases the bound is
    # Wilson's; with every failure on 4 of 40 bases (10 pairs each) it drops well below
    kind = np.zeros(400, int)
    correct = np.ones(400, bool)
    correct[:20] = False
    spread = _guards(correct, kind)["iia_to_unbalanced"]
    assert spread.bound == pytest.approx(wilson(380, 400).low, abs=1e-12)
    bases = np.repeat(np.arange(40), 10)  # pairs 0-19: bases 0 and 1, both all wrong
    shared = _guards(correct, kind, strings=(bases, np.arange(400)))["iia_to_unbalanced"]
    assert shared.value == spread.value
    assert shared.bound < spread.bound - 0.03
    assert spread.passes and not shared.passes
