"""A planted model is found by ``explain`` where it was planted.

The model is stored beside the tests (``planted_fixture.py`` says how it was made and
how to remake it); the planting recipe that made it is guarded by its first steps.
"""

import json

import pytest
import torch

from bracketlens import evaluate, evaluation_set
from bracketlens.algorithms import Search, explain
from bracketlens.algorithms.result import THRESHOLD
from bracketlens.planted import interchange_accuracy, plantable_search
from tests.integration.planted_fixture import (
    HERE,
    PARAM_RTOL,
    PLACEMENT,
    RECIPE,
    read_state,
    recipe_json,
    train_prefix,
)
from tests.integration.recipe_prefix import relative_drift, skip_unless_made_here


@pytest.fixture(scope="module")
def stored():
    return read_state()


def test_the_stored_model_holds_the_variable_at_its_planted_node(stored):
    model, _, meta = stored
    record = json.loads(meta["record"])
    held_out = evaluation_set(RECIPE.n_eval, seed=PLACEMENT.seed + 1_000_003)
    # another thread count may move a string across the decision boundary, no more
    assert evaluate(model, held_out).accuracy == pytest.approx(record["accuracy"], abs=1e-3)
    assert record["accuracy"] >= 0.99
    iia = interchange_accuracy(model, PLACEMENT.variable, held_out[held_out.seq_length >= 2])
    assert iia.keys() == record["iia"].keys()
    for node, value in iia.items():
        assert value == pytest.approx(record["iia"][node], abs=5e-3), node
    rivals = [v for k, v in iia.items() if k != HERE and int(k.split(".")[0]) in (0, 1)]
    assert iia[HERE] >= 0.85 and iia[HERE] > max(rivals) + 0.1, iia


@pytest.mark.slow(minutes=1)
def test_explain_finds_the_planted_variable_where_it_was_planted(stored):
    model, _, _ = stored
    result = explain(
        model,
        evaluation_set(2_000, seed=0),
        seed=0,
        models=["elevation_and_negative"],
        search=plantable_search(Search.quick()),
    )
    negative = {a.variable: a for a in result.variables}["negative"]
    site = negative.location.site
    assert (site.layer, site.head, tuple(negative.location.positions)) == (1, 1, (2,))
    assert negative.iia.value >= THRESHOLD


@pytest.mark.slow(minutes=1)
def test_planting_recipe_first_steps_are_reproducible_and_match_the_stored_state(stored):
    first, second = train_prefix(), train_prefix()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    _, prefix, meta = stored
    assert meta["recipe"] == recipe_json(), (
        "the planting recipe changed: regenerate the stored model (see planted_fixture.py)"
    )
    skip_unless_made_here(meta)
    drift = relative_drift(first, prefix)
    assert drift <= PARAM_RTOL, f"the first steps' parameters moved {drift:.2e}"
