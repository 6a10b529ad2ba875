"""The command line: output formats, exit codes and one-line errors."""

import json

import pytest

from bracketlens.cli import main
from tests.conftest import COURSE_DATA, COURSE_WEIGHTS


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse exits on usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _need_arena():
    if not COURSE_WEIGHTS.is_file():
        pytest.skip(f"course checkpoint not found at {COURSE_WEIGHTS} (CI provides it)")


def test_predict_json_with_course_weights(capsys):
    _need_arena()
    code, out, _ = run(
        capsys, "predict", "(())", "())(", "--weights", str(COURSE_WEIGHTS), "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["string"] for r in rows] == ["(())", "())("]
    assert [r["label"] for r in rows] == [True, False]
    assert rows[0]["p_balanced"] > 0.999 and rows[1]["p_balanced"] < 0.001


def test_evaluate_json_on_course_data(capsys):
    _need_arena()
    code, out, _ = run(
        capsys, "evaluate", "--weights", str(COURSE_WEIGHTS), "--data", str(COURSE_DATA), "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 100_000 and result["n_wrong"] == 7
    assert result["by_group"]["just neg failure"]["n_wrong"] == 6


def test_evaluate_table_on_bundled_model(capsys):
    code, out, _ = run(capsys, "evaluate", "--n", "300", "--seed", "2")
    assert code == 0
    assert "accuracy on 300 strings" in out and "just total elevation failure" in out


def test_predict_table_on_bundled_model(capsys):
    code, out, _ = run(capsys, "predict", "()", "")
    assert code == 0
    assert "(empty)" in out and "balanced" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "(a)"], "has 'a' at position 1"),
        (["predict", "(" * 41], "at most 40"),
        (["evaluate", "--n", "0"], "argument --n: must be a whole number from 1 to"),
        (["evaluate", "--data", "/nonexistent.json"], "does not exist"),
        (["evaluate", "--weights", "/nonexistent.pt"], "does not exist"),
        (["evaluate", "--n", "x"], "must be a whole number"),
        (["train", "--seed", "abc"], "must be a whole number from 0 to 4,294,967,295"),
        (["train", "--out", "/nonexistent-dir/m.safetensors"], "does not exist"),
        (["nonsense"], "invalid choice"),
        (["seeds", "--models", "0"], "argument --models: must be a whole number from 1"),
        (["seeds", "--models", "1", "--steps", "0"], "argument --steps: must be a whole"),
        (["seeds", "--recipe", "huge"], "invalid choice"),
        (["train", "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
        (["evaluate", "--device", "cuda:x"], "--device must be cpu, cuda or cuda:N"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_json_data(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[[")
    code, _, err = run(capsys, "evaluate", "--data", str(path))
    assert code == 2 and "not valid JSON" in err


def test_train_refuses_existing_output(capsys, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"x")
    code, _, err = run(capsys, "train", "--out", str(out), "--quiet")
    assert code == 2 and "pass --force" in err


def test_seeds_json(capsys, tmp_path):
    out_dir = str(tmp_path / "sweep")
    argv = ["seeds", "--models", "1", "--seed-start", "5", "--recipe", "tiny", "--out", out_dir]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"schema_version", "rows", "summary"}
    (row,) = result["rows"]
    assert row["seed"] == 5 and row["reused"] is False and 0 <= row["accuracy"] <= 1
    assert set(row) >= {"roles", "verdict", "iia", "seconds", "recipe_hash", "version"}
    assert set(result["summary"]["roles"]) >= {"elevation_head", "tally_head"}
    code, out, _ = run(capsys, *argv, "--json")  # the same sweep again: nothing is retrained
    assert code == 0 and json.loads(out)["rows"][0]["reused"] is True


def test_help_imports_no_torch():
    """--help answers at once: building the parser of every command must not import torch."""
    import subprocess
    import sys

    code = "import sys, bracketlens.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
