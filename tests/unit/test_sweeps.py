"""Sweeps without training: recipes, the row's verdict fields, the summary, the page, errors."""

import importlib.machinery
import json
import math
import sys
import types
from dataclasses import replace

import pytest
import torch
from plotly.offline import get_plotlyjs

from bracketlens.algorithms import Search
from bracketlens.cli.support import RECIPE_HELP
from bracketlens.errors import BracketLensError
from bracketlens.model.device import resolve_device
from bracketlens.report.universality import render_page, write_page
from bracketlens.stats import wilson
from bracketlens.sweeps import RECIPES, Sweep, get_recipe, run_sweep, summarise
from bracketlens.sweeps.task import base_row, explain_model, verdict_fields


def test_wilson_matches_the_closed_form_and_stays_in_bounds():
    est = wilson(8, 10)
    # Wilson's interval for 8/10 at z = 1.959964: [0.4902, 0.9433]
    assert math.isclose(est.low, 0.490162, abs_tol=1e-5)
    assert math.isclose(est.high, 0.943317, abs_tol=1e-5)
    assert wilson(0, 5).low == 0.0 and wilson(0, 5).high > 0.4
    assert wilson(5, 5).high == 1.0 and wilson(5, 5).low < 0.6
    assert math.isnan(wilson(0, 0).value)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_recipe_hash_is_stable_and_tracks_what_changes_the_result(monkeypatch):
    tiny = get_recipe("tiny")
    assert tiny.hash == get_recipe("tiny").hash
    assert tiny.with_steps(None) is tiny
    assert tiny.with_steps(61).hash != tiny.hash
    assert replace(tiny, search="quick").hash != tiny.hash
    # a preset is hashed by its numbers: a smoke search with another step count is another
    smoke, before = Search.smoke(), tiny.hash
    monkeypatch.setattr(Search, "smoke", classmethod(lambda cls: replace(smoke, das_steps=6)))
    assert tiny.hash != before
    monkeypatch.undo()
    assert tiny.hash == before
    # the models tested and the guards are in the hash: a "none" found with fewer models or
    # other guards is not reused
    from bracketlens.algorithms import guards

    monkeypatch.setattr(guards, "TELLING", 0.8)
    assert tiny.hash != before
    monkeypatch.undo()
    # so is the default search's every number: rows of a search that has changed are redone
    short, named = get_recipe("short").hash, Search.named
    monkeypatch.setattr(
        Search, "named", classmethod(lambda cls, n: replace(named(n), das_steps=31))
    )
    assert get_recipe("short").hash != short
    # but not the probe map's switch: it steers nothing, and a row does not hold the map
    monkeypatch.setattr(
        Search, "named", classmethod(lambda cls, n: replace(named(n), probes=False))
    )
    assert get_recipe("short").hash == short
    monkeypatch.undo()
    assert get_recipe("short").hash == short == "b1423ef5ca032fb5"
    assert len({r.hash for r in RECIPES.values()}) == len(RECIPES)
    assert set(RECIPE_HELP) == set(RECIPES)
    for name, recipe in RECIPES.items():  # --help states each recipe's steps
        assert RECIPE_HELP[name].startswith(f"{recipe.train.steps:,} steps"), name
    assert get_recipe("short").train.steps == 3000
    with pytest.raises(BracketLensError, match="unknown recipe"):
        get_recipe("huge")
    with pytest.raises(BracketLensError, match="steps must be a positive integer"):
        get_recipe("tiny", 0)


def _row(seed, elevation, negative, read, verdict=None, error=None):
    row = base_row(seed, get_recipe("tiny"), "cpu")
    roles = {"elevation_head": elevation, "negative_head": negative, "read_position": read}
    row["roles"] = {k: {"location": v, "confidence": 0.5} for k, v in roles.items()}
    return row | {"verdict": verdict, "error": error, "accuracy": 0.99}


def test_summary_counts_roles_verdicts_and_the_course_layout():
    explained = {
        "best_model": "elevation_and_negative",
        "models": [{"name": "elevation_and_negative", "iia": 0.95}, {"name": "x", "iia": 0.5}],
        "variables": [{"name": "elevation", "hook": "blocks.0.hook_resid_post", "head": None,
                       "positions": [1], "position": 1, "dim": 0, "iia": 0.97}],
    }  # fmt: skip
    fields = verdict_fields(explained)
    assert fields["verdict"] == "elevation_and_negative" and fields["iia"] == 0.95
    assert fields["variables"][0]["where"] == "blocks.0.hook_resid_post @1"
    rows = [
        _row(0, "2.0", "2.1", "1") | fields,
        _row(1, "2.0", "2.1", "1", verdict="none"),
        _row(2, "1.1", "2.1", None, verdict="none"),
        _row(3, None, None, None, error="WorkerCrashedError after 2 retries"),
    ]
    s = summarise(rows)
    assert (s["n_seeds"], s["n_analysed"], s["n_failed"], s["failed_seeds"]) == (4, 3, 1, [3])
    elevation = {e["location"]: e for e in s["roles"]["elevation_head"]}
    assert elevation["2.0"]["count"] == 2 and elevation["1.1"]["count"] == 1
    assert math.isclose(elevation["2.0"]["fraction"], 2 / 3)
    assert elevation["2.0"]["ci_low"] == pytest.approx(wilson(2, 3).low)
    assert s["roles"]["read_position"][0]["location"] in {"1", "not found"}
    assert s["course_layout"]["count"] == 2
    verdicts = {e["verdict"]: e for e in s["verdicts"]}
    assert verdicts["elevation_and_negative"]["variables"] == {
        "elevation": {"blocks.0.hook_resid_post @1": 1}
    }
    assert s["unexplained"] == 2
    assert summarise([])["course_layout"]["fraction"] is None  # no seeds: no NaN in the JSON


def test_summary_counts_seeds_per_passing_model_and_lists_the_unexplained():
    failing = {"variable": "suffix_positive", "guard": "telling_iia", "value": 0.8,
               "threshold": 0.85, "kinds": ["to_balanced"], "groups": [], "location": "x"}  # fmt: skip
    closest = {"best_model": "none", "models": [{"name": "b", "iia": 0.88}], "variables": [],
               "passing": [], "combined": None, "closest": {"model": "b", "failing": [failing]}}  # fmt: skip
    fields = verdict_fields(closest)
    assert fields["closest"] == {"model": "b", "failing": [
        {k: failing[k] for k in ("variable", "guard", "value", "threshold", "kinds", "groups")}
    ]}  # fmt: skip
    rows = [
        _row(0, "2.0", "2.1", "1", verdict="a") | {"passing": ["a", "b"]},
        _row(1, "2.0", "2.1", "1", verdict="a") | {"passing": ["a"]},
        _row(2, "2.0", "2.1", "1") | fields | {"combined": {"assignment": {}, "coverage": 0.5}},
        _row(3, "2.0", "2.1", "1") | fields,
        _row(4, "2.0", "2.1", "1", verdict="b"),  # a row written before `passing` existed
        _row(5, None, None, None, error="crashed"),
    ]
    s = summarise(rows)
    per_model = {e["model"]: e for e in s["passing_models"]}
    assert (per_model["a"]["count"], per_model["b"]["count"]) == (2, 2)
    assert per_model["a"]["ci_low"] == pytest.approx(wilson(2, 5).low, abs=1e-12)
    assert per_model["a"]["ci_high"] == pytest.approx(wilson(2, 5).high, abs=1e-12)
    assert s["explained"]["count"] == 4 and s["combined_only"]["count"] == 1
    assert s["explained"]["fraction"] == pytest.approx(0.8, abs=1e-12)
    assert s["unexplained_seeds"] == [
        {"seed": 3, "closest": "b", "iia": 0.88, "failing": fields["closest"]["failing"]}
    ]
    assert summarise([])["explained"]["fraction"] is None


def test_page_is_self_contained_and_names_every_seed(tmp_path):
    rows = [_row(0, "2.0", "2.1", "1"), _row(1, "1.1", "2.1", "3")]
    result = {"schema_version": 1, "rows": rows, "summary": summarise(rows)}
    html = render_page(result)
    assert "<script src" not in html and get_plotlyjs()[:500] in html  # plotly.js is inlined
    assert "Where each role lands" in html and "explain" in html
    path = write_page(result, tmp_path / "page")
    embedded = html.split('id="sweep">')[1].split("</script>")[0]
    assert json.loads(embedded)["rows"][1]["seed"] == 1
    assert path.read_text() == html
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BracketLensError, match="not a sweep report folder"):
        write_page(result, tmp_path / "other")


def test_more_workers_without_ray_is_one_error_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    sweep = Sweep([0, 1], get_recipe("tiny"), tmp_path / "sweep", workers=2)
    with pytest.raises(BracketLensError, match=r"pip install 'bracketlens\[cluster\]'"):
        run_sweep(sweep)
    assert not (tmp_path / "sweep").exists()  # refused before any work


def test_missing_extra_from_the_command_line(monkeypatch, tmp_path, capsys):
    from bracketlens.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["seeds", "--workers", "3", "--recipe", "tiny", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'bracketlens[cluster]'" in err


def test_device_is_checked_before_any_work():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(BracketLensError, match="cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(BracketLensError, match="no usable CUDA GPU"):
            resolve_device("cuda")


def test_explain_is_called_through_its_interface(monkeypatch):
    calls = []

    class Explanation:
        def to_json(self):
            return {"best_model": "none", "models": [{"name": "m", "iia": 0.4}], "variables": []}

    def explain(model, data, seed=0, search=None, split=True):
        calls.append((model, data, seed, search, split))
        return Explanation()

    class Search:
        @staticmethod
        def named(name):
            return f"search {name}"

    fake = types.ModuleType("bracketlens.algorithms")
    fake.__spec__ = importlib.machinery.ModuleSpec("bracketlens.algorithms", None)
    fake.explain, fake.Search = explain, Search
    monkeypatch.setitem(sys.modules, "bracketlens.algorithms", fake)
    result = explain_model("model", "data", 7)
    assert calls == [("model", "data", 7, "search default", True)]
    explain_model("model", "data", 7, "smoke", split=False)  # a Ray worker's seed
    assert calls[-1][-2:] == ("search smoke", False)
    assert verdict_fields(result) == {"verdict": "none", "iia": 0.4, "passing": [],
                                      "combined": None, "closest": None, "variables": []}  # fmt: skip


def test_a_seed_ray_gave_up_on_is_an_error_row_that_is_never_reused(tmp_path):
    from bracketlens.sweeps.runner import _result
    from bracketlens.sweeps.store import prepare_out, reusable_row, write_result

    class FakeRay:
        class exceptions:  # the shape of `ray.exceptions`
            RayError = RuntimeError

        def get(self, ref):
            raise RuntimeError("the worker died\ndetails")

    recipe = get_recipe("tiny")
    result = _result(FakeRay(), "ref", 3, recipe, "cpu")
    assert result.state is None
    assert result.row["error"] == "RuntimeError (Ray gave up after 2 retries): the worker died"
    out = prepare_out(tmp_path / "sweep")
    row = write_result(out, result, recipe)
    assert row["checkpoint"] is None
    assert json.loads((out / "rows" / "seed-000003.json").read_text())["error"] == row["error"]
    assert reusable_row(out, 3, recipe) is None  # a failed seed is run again next time
    assert summarise([row])["failed_seeds"] == [3]


def test_the_seeds_table_names_each_seed_no_model_explains(capsys):
    from bracketlens.terminal import seeds_table

    failing = [{"variable": "suffix_positive", "guard": "telling_iia", "value": 0.8,
                "threshold": 0.85, "kinds": [], "groups": []}]  # fmt: skip
    rows = [
        _row(0, "2.0", "2.1", "1", verdict="a") | {"passing": ["a"], "iia": 0.95},
        _row(1, "2.0", "2.1", "1", verdict="none")
        | {"passing": [], "iia": 0.88, "closest": {"model": "b", "failing": failing}},
    ]
    seeds_table({"rows": rows, "summary": summarise(rows)})
    out = capsys.readouterr().out
    assert "seed 1: no model passes; closest b fails suffix_positive telling_iia" in out
    assert "passes" in out and "seed 0: no model" not in out
