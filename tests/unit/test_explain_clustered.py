"""``benchmarks/explain_clustered.py``: explain's test pairs drawn again, and bounds that
resample whole strings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bracketlens.algorithms import PairCounts, Search, explain
from bracketlens.data import evaluation_set
from bracketlens.model.checkpoint import read_model
from bracketlens.stats import wilson

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "explain_clustered.py"


@pytest.fixture(scope="module")
def clustered():
    spec = importlib.util.spec_from_file_location("explain_clustered", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clusters_of_one_outcome_widen_the_interval(clustered) -> None:
    """Ten strings, each in 20 pairs with one outcome: the evidence is ten strings, and
    the interval is far wider than Wilson's over 200 pairs."""
    correct = np.repeat([True] * 7 + [False] * 3, 20)
    cluster = np.repeat(np.arange(10), 20)
    low, high = clustered.resampled(correct, cluster, 4000, seed=0)
    pairs = wilson(int(correct.sum()), len(correct))
    assert low <= 0.7 <= high
    assert high - low > 2 * (pairs.high - pairs.low)
    # one pair per string: about the interval of independent pairs
    low, high = clustered.resampled(correct, np.arange(200), 4000, seed=0)
    assert abs((high - low) - (pairs.high - pairs.low)) < 0.03


def test_it_draws_explains_test_pairs_again(clustered, tmp_path, monkeypatch, capsys) -> None:
    """On a small search whose models are all confirmed, every pair kind's IIA it
    measures is the one explain reported."""
    search = Search(PairCounts(train=16, validation=16, test=24), screen_per_cell=4, das_top=1,
                    das_dims=(1,), das_steps=5, generated="none", confirm_models=3,
                    confirm_test=48, refine_top=0, spread=False, probes=False,
                    walk_back=False)  # fmt: skip
    found = explain(read_model(), evaluation_set(600, seed=3), seed=3, search=search, split=False)
    out = tmp_path / "explain.json"
    out.write_text(json.dumps(found.to_json()))
    monkeypatch.setattr(sys, "argv", ["explain_clustered.py", str(out), "--resamples", "200"])
    clustered.main()
    printed = json.loads(capsys.readouterr().out)
    assert printed["same_as_json"] is True
    assert printed["rows"]
    for row in printed["rows"]:
        assert row["iia"] == pytest.approx(row["json_iia"], abs=1e-9)
        assert row["by_bases"][0] <= row["iia"] <= row["by_bases"][1]
        assert row["bases"] <= row["pairs"]
        assert row["guard_low"] <= row["wilson_low"] + 1e-12
