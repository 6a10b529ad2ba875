"""explain names a passing variable at its earliest passing location: the component that
wrote it into the residual stream, not the stream one step later."""

from __future__ import annotations

import functools
import importlib
from dataclasses import replace

import numpy as np
import pytest

from bracketlens import evaluation_set, load_model
from bracketlens.algorithms.causal import MODELS
from bracketlens.algorithms.choice import Candidates, choose
from bracketlens.algorithms.confirm import Context, confirm, label_pairs
from bracketlens.algorithms.earliest import earlier_fits, walk_back, walk_fits
from bracketlens.algorithms.equivalence import same_variable
from bracketlens.algorithms.generate import atom_model
from bracketlens.algorithms.locations import Location, Site, writers
from bracketlens.algorithms.pairs import sample_pairs, string_splits
from bracketlens.algorithms.search import Search
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name


def _at(kind: str, layer: int, positions: tuple[int, ...], head: int | None = None) -> Location:
    return Location(Site(act_name(kind, layer), head, layer), positions)


def test_the_writers_of_a_residual_location_are_its_block_at_the_same_positions():
    cfg = ModelConfig(n_layers=3, n_heads=2)
    labels = lambda locs: [(loc.site.label, loc.positions) for loc in locs]  # noqa: E731
    assert labels(writers(_at("resid_mid", 1, (0,)), cfg)) == [("z 1.0", (0,)), ("z 1.1", (0,))]
    # resid_pre 2 is resid_post 1: layer 1's heads, the stream between them and its MLP
    block = [("z 1.0", (0, 1)), ("z 1.1", (0, 1)), ("resid_mid 1", (0, 1)), ("mlp_post 1", (0, 1))]
    assert labels(writers(_at("resid_pre", 2, (0, 1)), cfg)) == block
    assert labels(writers(_at("resid_post", 1, (0, 1)), cfg)) == block
    # the whole stream at every position is the whole run: not a patch of its own
    every = tuple(range(5))
    assert [s for s, _ in labels(writers(_at("resid_pre", 1, every), cfg))] == [
        "z 0.0",
        "z 0.1",
        "mlp_post 0",
    ]
    assert writers(_at("resid_pre", 0, (1,)), cfg) == []
    assert writers(_at("z", 1, (0,), head=1), cfg) == []


def test_the_walk_tries_each_earlier_location_once_with_its_best_fit_earliest_first():
    late = _at("resid_mid", 1, (0,))
    head = _at("z", 1, (0,), 1)
    fits = ((late, 8, None), (head, 0, None), (_at("z", 1, (0,), 0), 0, None),
            (_at("post", 0, (0,)), 0, None), (_at("resid_pre", 2, (0,)), 0, None),
            (head, 4, None), (_at("post", 0, (0,)), 8, None))  # fmt: skip
    found = Candidates(None, fits, (fits[0],), (0.95,), (0.04,),  # type: ignore[arg-type]
                       ((0.04, 0.02, -0.01, 0.03, 0.05, 0.03, np.nan),))  # fmt: skip
    # MLP 0 (its whole vector), then head 1.0, then head 1.1 (its rotation); resid_pre 2
    # comes after the chosen patch
    assert earlier_fits(found, 0, late) == [3, 2, 5]


@pytest.fixture(scope="module")
def compiled_elevation():
    """The compiled model, the course's model's ``elevation`` and its pairs."""
    model = load_model("compiled")
    data = evaluation_set(1500, seed=0)
    tokens = data.tokens.numpy()
    search = Search(probes=False)
    split_of = string_splits(len(data), np.random.default_rng([0, 1]))
    causal = MODELS["elevation_and_negative"]
    variable = next(v for v in causal.intervened if v.name == "elevation")
    values = causal.values(tokens)
    pairs = sample_pairs(causal, variable, values, tokens, data.failure_groups.numpy(),
                         split_of, search.counts, np.random.default_rng(3))  # fmt: skip
    ctx = Context(model, data, 0, label_pairs(data, split_of, search, 0))
    return ctx, causal, variable, pairs, np.asarray(values["elevation"]), search


def test_a_variable_passing_in_the_residual_stream_is_named_at_the_head_that_wrote_it(
    compiled_elevation,
):
    # the compiled model's tally head 0.0 writes the total elevation at position 1, which
    # head 2.0 reads from there: the stream after block 0 at position 1 carries it too
    ctx, causal, variable, pairs, column, search = compiled_elevation
    stream = _at("resid_pre", 1, (1,))
    walk = walk_fits([stream], ctx.model.cfg, search)
    assert [loc.site.label for loc, _, _ in walk] == ["z 0.0", "z 0.1", "resid_mid 0", "mlp_post 0"]
    found = choose(ctx.model, ctx.data, None, [(stream, 0, None), *walk], [pairs])  # type: ignore[arg-type]
    # the head and the stream both score 1.0 on validation: the earlier is chosen
    assert found.chosen[0][0] == _at("z", 0, (1,), head=0)
    # the stream, had it been chosen (a rotation there may score best): the walk back
    stream_only = replace(found, chosen=((stream, 0, None),))
    test = pairs.in_split("test")
    chosen = confirm(ctx, causal, variable, test, stream_only, 0, column)
    assert chosen.passes and chosen.location == stream
    measure = functools.partial(confirm, ctx, causal, variable, test, stream_only, 0, column)
    named = walk_back(stream_only, 0, measure)
    assert named.passes
    assert named.location == _at("z", 0, (1,), head=0)
    assert named.chosen_at == stream
    assert named.passing_at[0] == named.location and named.passing_at[-1] == stream
    assert _at("z", 0, (1,), head=1) not in named.passing_at  # head 0.1 tallies positions 21 on
    assert named.to_json()["passing_at"][0]["location"] == "z 0.0 @ 1"


def test_a_variable_read_only_through_a_test_is_that_test_to_every_interchange():
    course = MODELS["elevation_and_negative"]  # elevation == 0 and no suffix opens more
    planted = atom_model(
        "planted", ("and", ("atom", "elevation_zero"), ("not", ("atom", "suffix_positive")))
    )
    assert same_variable(course, "elevation", planted, "elevation_zero")
    assert same_variable(course, "negative", planted, "suffix_positive")
    assert not same_variable(course, "negative", planted, "elevation_zero")
    two_sided = atom_model(
        "two", ("and", ("not", ("atom", "prefix_negative")), ("not", ("atom", "suffix_positive")))
    )
    assert not same_variable(two_sided, "prefix_negative", planted, "elevation_zero")


@pytest.mark.parametrize("walk", [False, True])
def test_the_search_walks_back_only_where_its_switch_is_on(monkeypatch, walk):
    from bracketlens import beside

    # the module, not the function the package exports under its name
    explain_module = importlib.import_module("bracketlens.algorithms.explain")

    calls = []
    original = explain_module.walk_back

    def counted(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(explain_module, "walk_back", counted)
    monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)  # calls seen here
    search = replace(Search.smoke(), walk_back=walk)
    found = explain_module.explain(load_model("compiled"), evaluation_set(600, seed=0),
                                   search=search, models=["elevation_and_negative"])  # fmt: skip
    assert found.variables and bool(calls) == walk
    assert walk or all(a.chosen_at is None and not a.passing_at for a in found.variables)
