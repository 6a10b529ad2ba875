"""A sweep's folder without training: whose files are whose, damaged files, one seed failing.

``run_seed`` is replaced by a stand-in that hands back a seeded random model at
once, so each test runs the real store, runner and CLI in well under a second.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from bracketlens.cli import main
from bracketlens.model.transformer import BracketTransformer
from bracketlens.sweeps import get_recipe
from bracketlens.sweeps import runner as runner_module
from bracketlens.sweeps.store import MANIFEST, checkpoint_path, row_path
from bracketlens.sweeps.task import ROLES, SeedResult, base_row
from bracketlens.weights.resolve import load_model

TINY = ["--recipe", "tiny", "--steps", "20"]


def _fake_seed(seed, recipe, device="cpu"):
    model = BracketTransformer(recipe.train.model)
    model.init_weights(seed=seed)
    roles = {name: {"location": "2.0", "confidence": 0.5} for name in ROLES}
    row = base_row(seed, recipe, device) | {"accuracy": 0.5 + seed / 100, "roles": roles}
    row |= {"verdict": "none", "iia": 0.25, "variables": [], "seconds": 0.0}
    return SeedResult(row, {k: v.clone() for k, v in model.state_dict().items()})


@pytest.fixture
def trained(monkeypatch):
    """The seeds ``run_seed`` was called for, in order (it hands back a random model)."""
    calls: list[int] = []

    def fake(seed, recipe, device="cpu"):
        calls.append(seed)
        return _fake_seed(seed, recipe, device)

    monkeypatch.setattr(runner_module, "run_seed", fake)
    return calls


def seeds(capsys, out, models=2):
    code = main(["seeds", "--models", str(models), *TINY, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"] if captured.out else None
    return code, rows, captured.err


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- files named like a sweep's, in a folder without the manifest: the user's ----------------


@pytest.mark.parametrize(
    "name",
    ["seeds.parquet", "rows/seed-000001.json", "models/seed-000000.safetensors",
     "models/seed-000001.json"],
)  # fmt: skip
def test_a_users_file_at_a_sweep_path_is_refused_before_training(trained, capsys, tmp_path, name):
    out = tmp_path / "mine"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("my own data")
    (out / "notes.txt").write_text("notes")
    before = _snapshot(out)
    code, _, err = seeds(capsys, out)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{out / name} is not a bracketlens sweep's" in err and "choose another --out" in err
    assert _snapshot(out) == before and trained == []
    assert not (out / MANIFEST).exists()


def test_a_manifest_that_is_not_ours_is_refused(trained, capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / MANIFEST).write_text('{"written_by": "someone else"}')
    code, _, err = seeds(capsys, out)
    assert code == 2 and "is not a bracketlens sweep's manifest" in err and trained == []


def test_a_folder_of_other_files_becomes_a_sweep_and_keeps_them(trained, capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("notes")
    code, rows, _ = seeds(capsys, out)
    assert code == 0 and [r["seed"] for r in rows] == [0, 1] and trained == [0, 1]
    assert (out / "notes.txt").read_text() == "notes" and (out / MANIFEST).is_file()
    code, rows, _ = seeds(capsys, out)  # marked now: every seed is reused
    assert code == 0 and [r["reused"] for r in rows] == [True, True] and trained == [0, 1]


# --- damaged files inside a sweep's folder: retrained and replaced ---------------------------


def _damage(path, how):
    if how == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff{not json")
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncate", "garbage", "empty"])
@pytest.mark.parametrize("which", ["checkpoint", "row", "sidecar", "row+sidecar", "parquet"])
def test_a_damaged_file_is_retrained_and_replaced(trained, capsys, tmp_path, which, how):
    out = tmp_path / "sweep"
    assert seeds(capsys, out)[0] == 0
    first = _snapshot(out)
    paths = {
        "checkpoint": [checkpoint_path(out, 1)],
        "row": [row_path(out, 1)],
        "sidecar": [checkpoint_path(out, 1).with_suffix(".json")],
        "row+sidecar": [row_path(out, 1), checkpoint_path(out, 1).with_suffix(".json")],
        "parquet": [out / "seeds.parquet"],
    }[which]
    for path in paths:
        _damage(path, how)
    code, rows, err = seeds(capsys, out)
    assert code == 0, err
    retrained = which != "parquet"
    assert [r["reused"] for r in rows] == [True, not retrained]
    assert trained == [0, 1, 1] if retrained else trained == [0, 1]
    model = load_model(checkpoint_path(out, 1))  # whole again
    expected = _fake_seed(1, get_recipe("tiny", 20)).state
    for name, weight in expected.items():
        torch.testing.assert_close(model.state_dict()[name], weight, rtol=0, atol=0)
    sidecar = "models/seed-000001.json"
    assert _snapshot(out)[sidecar] == first[sidecar]  # the training record, as first written
    assert pq.read_table(out / "seeds.parquet").column("seed").to_pylist() == [0, 1]


def test_a_checkpoint_swapped_for_another_seeds_is_not_reused(trained, capsys, tmp_path):
    out = tmp_path / "sweep"
    assert seeds(capsys, out)[0] == 0
    shutil.copyfile(checkpoint_path(out, 0), checkpoint_path(out, 1))  # loads, wrong digest
    code, rows, _ = seeds(capsys, out)
    assert code == 0 and [r["reused"] for r in rows] == [True, False] and trained == [0, 1, 1]


def test_a_row_records_its_checkpoints_digest(trained, capsys, tmp_path):
    import hashlib

    out = tmp_path / "sweep"
    _, rows, _ = seeds(capsys, out, models=1)
    digest = hashlib.sha256(checkpoint_path(out, 0).read_bytes()).hexdigest()
    assert rows[0]["checkpoint_sha256"] == digest
    assert json.loads(row_path(out, 0).read_text())["checkpoint_sha256"] == digest


# --- one seed failing never costs the others ---------------------------------------------------


def test_a_seed_that_cannot_be_saved_fails_alone(trained, capsys, tmp_path):
    out = tmp_path / "sweep"
    assert seeds(capsys, out, models=3)[0] == 0
    checkpoint_path(out, 1).unlink()
    checkpoint_path(out, 1).mkdir()  # nothing can be saved there now
    code, rows, err = seeds(capsys, out, models=3)
    assert code == 3, err
    assert err.count("\n") == 1 and "1 seed(s) failed (1)" in err
    assert [r["error"] is None for r in rows] == [True, False, True]
    assert "could not save the seed's files" in rows[1]["error"]
    assert json.loads(row_path(out, 1).read_text())["error"] == rows[1]["error"]
    table = pq.read_table(out / "seeds.parquet").to_pylist()
    assert [r["seed"] for r in table] == [0, 1, 2] and table[1]["error"] == rows[1]["error"]


def test_a_seed_whose_training_fails_sets_the_exit_code(monkeypatch, capsys, tmp_path):
    def fake(seed, recipe, device="cpu"):
        result = _fake_seed(seed, recipe, device)
        if seed == 0:
            return SeedResult(result.row | {"error": "RuntimeError: diverged"}, None)
        return result

    monkeypatch.setattr(runner_module, "run_seed", fake)
    code, rows, err = seeds(capsys, tmp_path / "sweep")
    assert code == 3 and "1 seed(s) failed (0)" in err
    assert rows[0]["error"] == "RuntimeError: diverged" and rows[1]["error"] is None
