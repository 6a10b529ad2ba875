"""The probe map: held-out linear probes of the grammar's variables at every site."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bracketlens.algorithms.probes import (
    BALANCED_ACCURACY,
    MIN_FIT,
    R2,
    ProbeMap,
    _Targets,
    probe_map,
    probe_targets,
)
from bracketlens.compiled.build import build_compiled
from bracketlens.data.generate import evaluation_set
from bracketlens.data.tokens import tokenize


def _targets(y: np.ndarray, kinds: tuple[str, ...], rng: np.random.Generator) -> _Targets:
    """Targets over ``y`` ``[strings, positions, variables]``, 30% of strings scored."""
    held_out = rng.random(len(y)) < 0.3
    return _Targets.of(y, kinds, np.ones(y.shape[:2], bool), held_out)


def test_a_probe_reads_what_is_linear_in_the_activation_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    n, positions, d = 3000, 3, 8
    integer = rng.integers(-5, 6, size=(n, positions)).astype(np.float64)
    boolean = (rng.random((n, positions)) < 0.3).astype(np.float64)
    unrelated = rng.integers(-5, 6, size=(n, positions)).astype(np.float64)
    x = rng.normal(size=(n, positions, d))
    x[..., 0] += 3 * integer
    x[..., 1] += 4 * boolean
    y = np.stack([integer, unrelated, boolean], -1)
    scores = _targets(y, (R2, R2, BALANCED_ACCURACY), rng).scores(
        torch.from_numpy(x).transpose(0, 1).contiguous()
    )
    assert scores.shape == (3, positions)
    assert (scores[0] > 0.98).all()  # R² of a linear function plus unit noise: 9/(9+1/10)
    assert (np.abs(scores[1]) < 0.02).all()  # nothing to read: R² about 0 held out
    assert (scores[2] > 0.95).all()  # two classes 4 apart in unit noise: 97.7% each


def test_too_few_strings_at_a_position_leaves_it_unscored() -> None:
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 3, size=(n, 2, 1)).astype(np.float64)
    x = rng.normal(size=(n, 2, 4)) + y
    held_out = rng.random(n) < 0.3
    real = np.ones((n, 2), bool)
    # position 1: one fitted string short of a fit (the others end before it)
    real[np.flatnonzero(~held_out)[MIN_FIT - 1 :], 1] = False
    scores = _Targets.of(y, (R2,), real, held_out).scores(
        torch.from_numpy(x).transpose(0, 1).contiguous()
    )
    assert np.isnan(scores[0, 1]) and not np.isnan(scores[0, 0])


def test_targets_drop_constant_and_complementary_atoms() -> None:
    tokens = tokenize(["()", ")(", "((", "))", "(()", ""]).numpy()
    names, kinds, values = probe_targets(tokens)
    assert "elevation / length" in names and "length / length" not in names
    booleans = [v for v, k in zip(names, kinds, strict=True) if k == BALANCED_ACCURACY]
    # prefix_level is the complement of prefix_negative: one of the two is probed
    assert "prefix_negative" in booleans and "prefix_level" not in booleans
    assert values.shape == (6, tokens.shape[1], len(names))
    assert set(np.unique(values[..., [names.index(b) for b in booleans]])) <= {0.0, 1.0}


def test_the_compiled_tally_is_elevation_over_length_at_its_head() -> None:
    """The hand-built model's head 0.0 averages ±1 over the string at position 1: its
    output there is the elevation divided by the length, not the elevation."""
    probes = probe_map(build_compiled(), evaluation_set(2000, seed=0), seed=0)
    site = probes.sites.index("z 0.0")
    over_length = probes.scores[probes.variables.index("elevation / length"), site, 1]
    raw = probes.scores[probes.variables.index("elevation"), site, 1]
    assert over_length > 0.95
    assert over_length - raw > 0.2
    # the token at position 1 fixes the prefix elevation there (+1 or -1)
    first = probes.scores[probes.variables.index("prefix_elevation"), 0, 1]
    assert first == pytest.approx(1.0, abs=1e-6)
    assert probes.best("elevation / length") is not None


def test_the_map_as_json_names_each_cell_s_best_position() -> None:
    scores = np.full((2, 3, 4), np.nan)
    scores[0, 1] = [0.1, 0.9, 0.3, np.nan]
    scores[1, 2, 3] = 0.7
    probes = ProbeMap(("a", "b"), (R2, BALANCED_ACCURACY), ("s0", "s1", "s2"), scores, 100)
    out = json.loads(json.dumps(probes.to_json()))
    assert out["best"] == [[None, 0.9, None], [None, None, 0.7]]
    assert out["best_position"] == [[-1, 1, -1], [-1, -1, 3]]
    assert probes.best("a") == ("s1", 1, 0.9)
    assert probes.best("b") == ("s2", 3, 0.7)


def test_the_probe_figure_has_a_panel_per_kind_and_position_with_the_best_named() -> None:
    from bracketlens.plots.algorithms import probe_heatmaps

    scores = np.full((2, 3, 5), np.nan)
    scores[0, :, 0] = 0.2
    scores[0, 1, 4] = 0.8
    scores[1, :, 1] = 0.9
    probes = ProbeMap(("a", "b"), (R2, BALANCED_ACCURACY), ("s0", "s1", "s2"), scores, 100)
    fig = probe_heatmaps(probes)
    assert len(fig.data) == 6  # two kinds by position 0, position 1, the best other
    best_other = fig.data[2]  # integers, the best position past 1
    assert list(best_other.y) == ["a"]
    assert best_other.z[0][1] == pytest.approx(0.8) and best_other.text[0][1] == "@4"
    assert best_other.z[0][0] is None  # no score past position 1 there
    assert fig.data[4].z[0] == [0.9, 0.9, 0.9]  # booleans at position 1


def test_the_report_says_whether_its_search_was_explain_s_own() -> None:
    from types import SimpleNamespace

    from bracketlens.algorithms.conclude import budget
    from bracketlens.algorithms.search import Search
    from bracketlens.report.text import _search_words

    own = _search_words(SimpleNamespace(budget=budget(Search()), probes=None))
    lighter = _search_words(SimpleNamespace(budget=budget(Search.quick()), probes=None))
    assert "own" in own and "lighter" not in own
    assert "lighter" in lighter
