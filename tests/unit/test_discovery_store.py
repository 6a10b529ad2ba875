"""The report's discovery stage in the result store: records, keys, reuse, and its failures."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from bracketlens import beside, evaluation_set
from bracketlens.algorithms import store as explain_store
from bracketlens.algorithms.record import RecordError, decode, encode
from bracketlens.algorithms.store import ExplainStore, StoreWarning
from bracketlens.discovery import store as store_module
from bracketlens.discovery.pairs import EDITS
from bracketlens.discovery.result import Budget, Circuit, Discovery, EdgeRow, Optimum, SizeRow
from bracketlens.discovery.stage import ReportDiscovery
from bracketlens.discovery.store import CLASSES, StoredDiscovery, discovery_key
from bracketlens.model.transformer import BracketTransformer
from bracketlens.pipeline import run

NAMES = ("embed", "0.0", "0.1", "mlp0", "1.0", "1.1", "mlp1", "2.0", "2.1", "mlp2", "logits")


def _found(cmd: float = 0.3) -> ReportDiscovery:
    """A stage result holding every kind of field: a circuit, the optimum, NaN and None."""
    edges = (EdgeRow("embed", "2.0", "v", 3, -0.125), EdgeRow("0.1", "mlp1", "mlp", 0, 1e-9))
    circuit = Circuit(edges, ("embed", "0.1", "2.0", "mlp1", "logits"), 2, 0.97, 0.96)
    rows = (SizeRow(1, ("2.1",), 0.5, ("mlp0",), 0.25), SizeRow(0, (), 0.0, (), 0.0))
    found = Discovery(
        "eap-ig", "position", "counterfactual", 300, 290, {"seed": 0, "chosen_on": 150},
        [Budget(0.001, 1, None), Budget(0.5, 50, 0.97)], 0.7, cmd, 100, circuit, None, None,
        Optimum(rows, ("2.1",), 0.96, None), {e: [math.nan, 0.9] for e in EDITS}, 3.0,
    )  # fmt: skip
    return ReportDiscovery(found, None, 600, NAMES)


def _dumped(found: ReportDiscovery) -> str:
    return json.dumps(found.to_json(), sort_keys=True)


@pytest.fixture(scope="module")
def data():
    return evaluation_set(600, seed=3)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Each time the stage runs (here, not in a child: it returns :func:`_found`)."""
    made: list[int] = []

    def fake(model, data, *, seed=0):
        made.append(seed)
        return _found()

    monkeypatch.setattr(store_module, "report_discovery", fake)
    monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
    return made


def _stage(model, data, store: ExplainStore | None, seed: int = 0) -> StoredDiscovery:
    with StoredDiscovery(model, data, seed=seed, device="cpu", store=store) as stage:
        stage.result()
    return stage


def test_a_record_rebuilds_the_stage_result_exactly() -> None:
    found = _found()
    back = decode(json.loads(json.dumps(encode(found, CLASSES))), CLASSES, "a record")
    assert isinstance(back, ReportDiscovery) and _dumped(back) == _dumped(found)
    assert json.dumps(encode(back, CLASSES)) == json.dumps(encode(found, CLASSES))
    assert back.result is not None and found.result is not None
    assert back.result.circuit == found.result.circuit
    assert back.result.optimum == found.result.optimum
    assert isinstance(back.components, tuple) and isinstance(back.result.budgets, list)
    with pytest.raises(RecordError, match="Popen"):
        decode({"class": "Popen", "fields": {}}, CLASSES, "a record")


@pytest.mark.slow(minutes=1)
def test_a_stored_real_result_is_the_computed_one(tmp_path, bundled_model, data) -> None:
    """The stage on 420 strings (210 pairs), computed in a child, stored and read back."""
    few = data[:420]
    store = ExplainStore(tmp_path)
    first = _stage(bundled_model, few, store)
    assert not first.stored and first.result().result is not None
    second = _stage(bundled_model, few, store)
    assert second.stored
    assert second.result() == first.result()  # no NaN in it: equal field by field
    assert _dumped(second.result()) == _dumped(first.result())


def test_the_second_run_reads_the_stored_result(tmp_path, bundled_model, data, calls) -> None:
    store = ExplainStore(tmp_path)
    first = _stage(bundled_model, data, store)
    assert calls == [0] and not first.stored and len(list(tmp_path.glob("*.json"))) == 1
    second = _stage(bundled_model, data, store)
    assert calls == [0] and second.stored and _dumped(second.result()) == _dumped(_found())


def test_another_seed_weights_strings_or_threads_is_another_key(
    monkeypatch, bundled_model: BracketTransformer, data
) -> None:
    key = discovery_key(bundled_model, data, 0, "cpu")
    assert discovery_key(bundled_model, data, 0, "cpu") == key
    assert discovery_key(bundled_model, data[:600], 0, "cpu") == key  # the stage reads 600
    changed = copy.deepcopy(bundled_model)
    with torch.no_grad():
        changed.blocks[0].attn.W_Q[0, 0, 0] += 1e-6
    others = [
        discovery_key(bundled_model, data, 1, "cpu"),
        discovery_key(changed, data, 0, "cpu"),
        discovery_key(bundled_model, data[:599], 0, "cpu"),
        discovery_key(bundled_model, evaluation_set(600, seed=4), 0, "cpu"),
    ]
    monkeypatch.setattr(store_module, "forkable", lambda device="cpu": False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # run here at 7 threads
    others.append(discovery_key(bundled_model, data, 0, "cpu"))
    assert len({key, *others}) == 1 + len(others)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda entry: "{not json", "damaged"),
        (lambda entry: json.dumps(entry | {"key": "0" * 64}), "schema, kind or key"),
        (lambda entry: json.dumps(entry | {"kind": "explain"}), "schema, kind or key"),
        (lambda entry: json.dumps(entry | {"record": {"class": "EdgeRow", "fields": {}}}), "fields"),
        (lambda entry: json.dumps(entry | {"record": entry["record"]["fields"]["result"]}), "holds a Discovery"),
        (lambda entry: json.dumps(entry | {"discovery": {"cmd": 0.5}}), "give its JSON"),
    ],
)  # fmt: skip
def test_a_damaged_entry_is_computed_again_with_one_warning(
    tmp_path, bundled_model, data, calls, damage, why
) -> None:
    store = ExplainStore(tmp_path)
    _stage(bundled_model, data, store)
    [path] = tmp_path.glob("*.json")
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.warns(StoreWarning, match=why) as caught:
        again = _stage(bundled_model, data, store)
    assert len(caught) == 1 and calls == [0, 0] and not again.stored
    assert _stage(bundled_model, data, store).stored and calls == [0, 0]  # mended


def test_an_unusable_store_still_gives_the_result(tmp_path, bundled_model, data, calls) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.warns(StoreWarning, match="cannot read") as caught:
        stage = _stage(bundled_model, data, ExplainStore(blocker / "explain"))
    assert len(caught) == 1 and calls == [0] and _dumped(stage.result()) == _dumped(_found())


def test_a_store_that_cannot_be_written_still_gives_the_result(
    monkeypatch, tmp_path, bundled_model, data, calls
) -> None:
    def refuse(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(explain_store, "atomic_write_text", refuse)  # the entries' one writer
    with pytest.warns(StoreWarning, match="cannot store") as caught:
        stage = _stage(bundled_model, data, ExplainStore(tmp_path))
        result = stage.result()  # asked again: not computed, written or warned again
    assert len(caught) == 1 and calls == [0] and _dumped(result) == _dumped(_found())


def test_the_pipeline_reads_and_keeps_the_stage_only_with_a_store(
    tmp_path, bundled_model, data, calls
) -> None:
    """``--no-cache`` gives the pipeline no store: the stage runs and nothing is written."""
    for _ in range(2):
        found = run(bundled_model, data, stages=["discover"], causal_n=200, store=None).discovery
        assert found is not None and _dumped(found) == _dumped(_found())
    assert calls == [0, 0] and not list(tmp_path.iterdir())
    for _ in range(2):
        run(bundled_model, data, stages=["discover"], causal_n=200, store=ExplainStore(tmp_path))
    assert calls == [0, 0, 0] and len(list(tmp_path.glob("*.json"))) == 1


def test_a_stored_stage_leaves_the_analysis_the_threads_it_has_beside_the_child(
    monkeypatch, tmp_path, bundled_model, data, calls
) -> None:
    """Beside the stage's child the analysis gives up a thread; stored, it does the same,
    so that its results are the same bit for bit."""
    store = ExplainStore(tmp_path)
    _stage(bundled_model, data, store)
    monkeypatch.setattr(store_module, "forkable", lambda device="cpu": True)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with StoredDiscovery(bundled_model, data, seed=0, device="cpu", store=store) as stage:
            assert stage.stored and torch.get_num_threads() == 2
            stage.result()
            assert torch.get_num_threads() == 3
        with StoredDiscovery(bundled_model, data, seed=0, device="cpu", store=store):
            assert torch.get_num_threads() == 2  # an error here: leaving gives them back
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
