"""explain's result store: records that rebuild an explanation, keys, reuse, and its failures."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bracketlens import evaluation_set
from bracketlens.algorithms import store as store_module
from bracketlens.algorithms.explain import explain
from bracketlens.algorithms.record import RecordError, from_record, to_record
from bracketlens.algorithms.result import Explanation
from bracketlens.algorithms.search import Search
from bracketlens.algorithms.store import (
    ExplainStore,
    StoreWarning,
    explain_key,
    reuse_note,
    store_dir,
    stored_explain,
)
from bracketlens.cli import main

SEARCH = replace(Search.smoke(), probes=True)  # the probe map too, so that its record is tested


@pytest.fixture(scope="module")
def data():
    return evaluation_set(600, seed=3)


@pytest.fixture(scope="module")
def found(bundled_model, data) -> Explanation:
    return explain(bundled_model, data, seed=0, search=SEARCH, split=False)


def _dumped(e: Explanation) -> str:
    return json.dumps(e.to_json(), sort_keys=True)


@pytest.fixture
def calls(monkeypatch, found) -> list[int]:
    """Each search the store's explain runs (it returns ``found`` without searching)."""
    made: list[int] = []

    def fake(model, data, seed=0, *, search=None):
        made.append(seed)
        return found

    monkeypatch.setattr(store_module, "explain", fake)
    return made


def test_a_record_rebuilds_the_explanation_exactly(found) -> None:
    record = json.loads(json.dumps(to_record(found)))  # through JSON text, as stored
    back = from_record(record)
    assert _dumped(back) == _dumped(found)
    assert json.dumps(to_record(back)) == json.dumps(to_record(found))
    assert found.probes is not None and back.probes is not None
    np.testing.assert_array_equal(back.probes.scores, found.probes.scores)
    for a, b in zip(back.variables, found.variables, strict=True):
        for name in ("correct", "kind", "telling", "group", "control_correct", "flipped"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).dtype == getattr(b, name).dtype
        assert (a.basis is None) == (b.basis is None)
        if a.basis is not None:
            torch.testing.assert_close(a.basis, b.basis, rtol=0, atol=0)
    for a, b in zip(back.screens, found.screens, strict=True):
        np.testing.assert_array_equal(a.iia, b.iia)


def test_a_record_of_other_classes_or_fields_is_refused(found) -> None:
    record = to_record(found)
    other = copy.deepcopy(record)
    other["fields"].pop("seed")
    with pytest.raises(RecordError, match="other fields"):
        from_record(other)
    with pytest.raises(RecordError, match="not an explanation record"):
        from_record({"class": "Popen", "fields": {}})
    with pytest.raises(RecordError, match="a Estimate"):
        from_record(to_record(found)["fields"]["models"]["tuple"][0]["fields"]["iia"])


def test_the_second_call_reuses_the_stored_result(tmp_path, bundled_model, data, calls) -> None:
    store = ExplainStore(tmp_path)
    first = stored_explain(bundled_model, data, 0, SEARCH, store)
    assert calls == [0] and first.stored_at is None and reuse_note(first) is None
    [path] = tmp_path.glob("*.json")
    second = stored_explain(bundled_model, data, 0, SEARCH, store)
    assert calls == [0]  # no second search
    assert second.stored_at == str(path)
    assert _dumped(second) == _dumped(first)
    assert str(path) in str(reuse_note(second))


def test_another_seed_search_weights_or_data_is_another_key(bundled_model, data) -> None:
    key = explain_key(bundled_model, data, 0, SEARCH)
    assert explain_key(bundled_model, data, 0, SEARCH) == key
    changed = copy.deepcopy(bundled_model)
    with torch.no_grad():
        changed.blocks[0].attn.W_Q[0, 0, 0] += 1e-6
    others = [
        explain_key(bundled_model, data, 1, SEARCH),
        explain_key(bundled_model, data, 0, replace(SEARCH, das_steps=6)),
        explain_key(bundled_model, data, 0, replace(SEARCH, probes=False)),
        explain_key(changed, data, 0, SEARCH),
        explain_key(bundled_model, data[:599], 0, SEARCH),
        explain_key(bundled_model, evaluation_set(600, seed=4), 0, SEARCH),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_a_restricted_search_is_computed_and_not_stored(tmp_path, bundled_model, data, calls):
    restricted = replace(SEARCH, sites=lambda s: s.layer == 2)
    for _ in range(2):
        stored_explain(bundled_model, data, 0, restricted, ExplainStore(tmp_path))
    assert calls == [0, 0] and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda entry: "{not json", "damaged"),
        (lambda entry: json.dumps(entry | {"key": "0" * 64}), "schema or key"),
        (lambda entry: json.dumps(entry | {"schema": 0}), "schema or key"),
        (lambda entry: json.dumps(entry | {"record": {"class": "Site", "fields": {}}}), "fields"),
        (lambda entry: json.dumps(entry | {"explanation": {"best_model": "x"}}), "give its JSON"),
    ],
)
def test_a_damaged_entry_is_computed_again_with_one_warning(
    tmp_path, bundled_model, data, calls, damage, why
) -> None:
    store = ExplainStore(tmp_path)
    stored_explain(bundled_model, data, 0, SEARCH, store)
    [path] = tmp_path.glob("*.json")
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.warns(StoreWarning, match=why) as caught:
        again = stored_explain(bundled_model, data, 0, SEARCH, store)
    assert len(caught) == 1 and calls == [0, 0] and again.stored_at is None
    assert stored_explain(bundled_model, data, 0, SEARCH, store).stored_at == str(path)  # mended


def test_an_unusable_store_still_gives_the_result(tmp_path, bundled_model, data, calls, found):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    store = ExplainStore(blocker / "explain")  # a folder under a file can be neither
    with pytest.warns(StoreWarning, match="cannot read") as caught:
        result = stored_explain(bundled_model, data, 0, SEARCH, store)
    assert len(caught) == 1 and result is found and calls == [0]


def test_a_store_that_cannot_be_written_still_gives_the_result(
    monkeypatch, tmp_path, bundled_model, data, calls, found
) -> None:
    def refuse(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store_module, "atomic_write_text", refuse)
    with pytest.warns(StoreWarning, match="cannot store") as caught:
        result = stored_explain(bundled_model, data, 0, SEARCH, ExplainStore(tmp_path))
    assert len(caught) == 1 and result is found and calls == [0]


def test_the_folder_is_the_variable_else_xdg_else_home(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BRACKETLENS_CACHE_DIR", str(tmp_path / "mine"))
    assert store_dir() == tmp_path / "mine"
    monkeypatch.delenv("BRACKETLENS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store_dir() == tmp_path / "xdg" / "bracketlens" / "explain"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store_dir() == tmp_path / "home" / ".cache" / "bracketlens" / "explain"


def _explain(capsys, *flags: str) -> tuple[int, str, str]:
    code = main(["explain", "--n", "600", "--seed", "3", "--search", "smoke", "--json", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_prints_the_same_json_stored_or_computed_and_says_which(
    monkeypatch, tmp_path, capsys, calls
) -> None:
    monkeypatch.setenv("BRACKETLENS_CACHE_DIR", str(tmp_path))
    code, computed, err = _explain(capsys)
    assert code == 0 and calls == [3] and "Reused" not in err
    [path] = tmp_path.glob("*.json")
    code, reused, err = _explain(capsys)
    assert code == 0 and calls == [3] and reused == computed
    assert "Reused explain's result" in err and str(path) in err


def test_no_cache_neither_reads_nor_writes(monkeypatch, tmp_path, capsys, calls) -> None:
    monkeypatch.setenv("BRACKETLENS_CACHE_DIR", str(tmp_path))
    assert _explain(capsys)[0] == 0 and len(list(tmp_path.iterdir())) == 1
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    code, _, err = _explain(capsys, "--no-cache")
    assert code == 0 and calls == [3, 3] and "Reused" not in err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    monkeypatch.setenv("BRACKETLENS_CACHE_DIR", str(tmp_path / "fresh"))
    assert _explain(capsys, "--no-cache")[0] == 0 and not Path(tmp_path / "fresh").exists()
