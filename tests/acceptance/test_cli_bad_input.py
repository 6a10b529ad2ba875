"""Every input of the issue-19 sweep: one line on stderr and exit 2, or a clean success.

Each row of the issue's table and each data-loss point has a test here; the
checks of the pieces themselves live in tests/unit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from bracketlens import BracketTransformer, ModelConfig
from bracketlens.cli import main


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse exits on usage errors and --version
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, err, message, expected_code=2):
    assert code == expected_code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err


def _strict(text):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def state():
    model = BracketTransformer()
    model.init_weights(seed=0)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


# --- the table ---------------------------------------------------------------------------


def test_data_is_a_directory(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "--data", tmp_path)
    assert_one_line(code, err, "is a folder; pass the JSON file inside it")


def test_data_is_an_empty_list(capsys, tmp_path):
    (tmp_path / "d.json").write_text("[]")
    code, _, err = run(capsys, "evaluate", "--data", tmp_path / "d.json")
    assert_one_line(code, err, "holds no records")


def test_deeply_nested_json(capsys, tmp_path):
    (tmp_path / "d.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run(capsys, "evaluate", "--data", tmp_path / "d.json")
    assert_one_line(code, err, "nests 100000 levels deep")


def test_two_distinct_strings_for_analyze(capsys, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([["()", True], ["(", False]] * 10))
    code, _, err = run(capsys, "analyze", "--data", tmp_path / "d.json")
    assert_one_line(code, err, "needs strings of every failure group in both halves")


def test_pt_whose_values_are_strings(capsys, tmp_path, state):
    torch.save({k: "x" for k in state}, tmp_path / "m.pt")
    code, _, err = run(capsys, "predict", "()", "--weights", tmp_path / "m.pt")
    assert_one_line(code, err, "not float tensors: embed.W_E (str)")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("{bad", "has a config that is not valid JSON"),
        ("[1]", "a model config is a JSON object, not list"),
        ('{"d_head": "28"}', "d_head must be a whole number from 1 to 65,536; got '28'"),
        ('{"d_vocab": 3}', "d_vocab must be a whole number from 5 to 65,536; got 3"),
        ('{"n_ctx": 10}', "n_ctx must be a whole number from 42 to 65,536; got 10"),
    ],
)
def test_safetensors_with_a_bad_config(capsys, tmp_path, state, header, message):
    save_file(state, tmp_path / "m.safetensors", metadata={"config": header})
    code, _, err = run(capsys, "predict", "()", "--weights", tmp_path / "m.safetensors")
    assert_one_line(code, err, message)


@pytest.mark.parametrize("command", ["train", "evaluate", "attack"])
@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_seed_out_of_range(capsys, tmp_path, command, seed):
    extra = ["--out", tmp_path / "m.safetensors"] if command == "train" else []
    code, _, err = run(capsys, command, "--seed", seed, *extra)
    assert_one_line(code, err, "argument --seed: must be a whole number from 0 to 4,294,967,295")
    assert list(tmp_path.iterdir()) == []


def test_huge_n(capsys):
    code, _, err = run(capsys, "evaluate", "--n", 10**12)
    assert_one_line(code, err, "argument --n: must be a whole number from 1 to 2,000,000")


def test_huge_data_file(capsys, tmp_path):
    with (tmp_path / "d.json").open("wb") as f:
        f.truncate(300 * 2**20)
    code, _, err = run(capsys, "evaluate", "--data", tmp_path / "d.json")
    assert_one_line(code, err, "data files are limited to 64 MiB")


def test_report_out_dot_fails_before_the_analysis(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "report", "--out", ".", "--weights", "/nonexistent.pt")
    assert_one_line(code, err, "--out . is the folder you are in")  # not the weights' error
    assert list(tmp_path.iterdir()) == []


def test_report_out_unwritable_fails_before_the_analysis(capsys, tmp_path, monkeypatch):
    import bracketlens.report.write as write

    out = tmp_path / "out"
    out.mkdir()
    real = write.os.access
    monkeypatch.setattr(write.os, "access", lambda p, m: p != out and real(p, m))
    code, _, err = run(capsys, "report", "--out", out, "--weights", "/nonexistent.pt")
    assert_one_line(code, err, f"folder {out} is not writable")


# --- data loss ---------------------------------------------------------------------------


def test_report_refuses_a_folder_with_the_users_files(capsys, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    for name in ("index.html", "findings.json", "notes.txt"):
        (out / name).write_text(name)
    (out / "mydata").mkdir()
    code, _, err = run(capsys, "report", "--out", out, "--n", "100")
    message = "holds findings.json, index.html, mydata and 1 more, which bracketlens did not write"
    assert_one_line(code, err, message)
    assert (out / "notes.txt").read_text() == "notes.txt" and (out / "mydata").is_dir()
    assert (out / "findings.json").read_text() == "findings.json"


def test_report_never_replaces_files_merely_named_like_a_reports(capsys, tmp_path, monkeypatch):
    out = tmp_path / "d"
    out.mkdir()
    (out / "findings.json").write_text('{"x":1}\n')
    (out / "index.html").write_text("hi\n")
    monkeypatch.setattr(
        "bracketlens.cli.commands._run_analysis", lambda *a, **k: pytest.fail("ran")
    )
    code, _, err = run(
        capsys, "report", "--n", "1000", "--no-png", "--search", "quick", "--out", out
    )
    assert_one_line(code, err, "holds findings.json, index.html, which bracketlens did not write")
    assert (out / "findings.json").read_text() == '{"x":1}\n'
    assert (out / "index.html").read_text() == "hi\n"


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_train_never_overwrites_the_users_data_file(capsys, tmp_path, force):
    data = tmp_path / "brackets_data.json"
    data.write_text('[["()", true]]')
    out = tmp_path / "brackets_data.safetensors"
    code, _, err = run(capsys, "train", "--out", out, "--steps", "1", "--quiet", *force)
    assert_one_line(code, err, f"{data} exists")
    assert data.read_text() == '[["()", true]]' and not out.exists()


# --- nothing cryptic ---------------------------------------------------------------------


@pytest.fixture
def nan_checkpoint(tmp_path, state):
    """A checkpoint whose embedding is all NaN."""
    state["embed.W_E"][:] = float("nan")
    path = tmp_path / "m.safetensors"
    save_file(state, path, metadata={"config": json.dumps(ModelConfig().to_dict())})
    return path


def test_nan_checkpoint_refused_then_strict_json_when_allowed(capsys, nan_checkpoint):
    path = nan_checkpoint
    code, _, err = run(capsys, "evaluate", "--n", "20", "--weights", path, "--json")
    assert_one_line(code, err, "NaN or infinite weights in embed.W_E")
    code, out, _ = run(capsys, "predict", "()", "--weights", path, "--json", "--allow-nonfinite")
    assert code == 0
    row = _strict(out)[0]
    assert row["p_balanced"] is None and "NaN" in row["p_balanced_null_reason"]


def test_analyze_of_a_nan_model_allowed_to_load_fails_in_one_line(capsys, nan_checkpoint):
    """NaN weights reach the LayerNorm fit's eigendecomposition: one line, no LinAlgError."""
    argv = ["analyze", "--n", "40", "--weights", nan_checkpoint, "--allow-nonfinite"]
    code, _, err = run(capsys, *argv)
    assert_one_line(code, err, "activations are not finite")


def test_analyze_warnings_come_with_results_and_errors_alone(capsys, tmp_path):
    """A small sample's warnings are printed after a finished run, never before an error.
    Every string here that starts with '(' is unbalanced, so localisation finds no
    neurons and the elevation analysis says what to do."""
    from bracketlens import BracketDataset, load_model
    from bracketlens.pipeline import localise

    strings = ["", "", "", ")", "(", ")(", "((", "", "", "", "", "", ")", ")(", *[""] * 7]
    (tmp_path / "d.json").write_text(json.dumps([[s, s == ""] for s in strings]))
    code, _, err = run(capsys, "analyze", "--data", tmp_path / "d.json", "--json")
    assert_one_line(code, err, "start with '('; use more strings")
    data = BracketDataset.from_json(tmp_path / "d.json")
    assert localise(load_model(), data).mlp_neurons == []


def test_evaluate_json_is_strict_for_empty_groups(capsys):
    code, out, _ = run(capsys, "evaluate", "--n", "4", "--json")
    assert code == 0
    groups = _strict(out)["by_group"]
    assert any(g["accuracy"] is None and g["accuracy_null_reason"] for g in groups.values())


def test_every_json_output_is_made_strict(capsys, monkeypatch):
    """A subcommand printing json.dumps(NaN) itself still writes strict JSON."""
    import bracketlens.cli.parser as parser

    monkeypatch.setattr(parser, "cmd_evaluate", lambda args: print(json.dumps({"x": float("nan")})))
    code, out, _ = run(capsys, "evaluate", "--json")
    assert code == 0 and _strict(out) == {"x": None, "x_null_reason": _strict(out)["x_null_reason"]}


def test_unsafe_pickle_is_one_line_without_torchs_advice(capsys, tmp_path):
    torch.save({"embed.W_E": _RunsCode()}, tmp_path / "evil.pt")
    code, _, err = run(capsys, "predict", "()", "--weights", tmp_path / "evil.pt")
    assert_one_line(code, err, "could run code when loaded")
    assert "weights_only" not in err


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_weights_folder(capsys, tmp_path):
    code, _, err = run(capsys, "predict", "()", "--weights", tmp_path)
    assert_one_line(code, err, "is a folder")


def test_small_samples_state_the_minimum(capsys):
    code, out, err = run(capsys, "analyze", "--n", "20", "--json")
    assert code == 0
    assert "warning: the first half of the sample has only 1 " in err
    assert "at least 30 of each failure group in each half" in err
    assert "use at least --n 1000" in _strict(out)["warnings"][0]
    assert "Warning" not in err  # library warnings, if any, are one plain line each
    code, _, err = run(capsys, "analyze", "--n", "19")
    assert_one_line(code, err, "the analysis needs at least 20 strings, got 19")
    code, _, err = run(capsys, "circuit", "--n", "39")
    assert_one_line(code, err, "the circuit search needs at least 40 strings")


def test_internal_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import bracketlens.model as model

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(model, "predict_proba", broken)
    code, _, err = run(capsys, "predict", "()")
    assert_one_line(
        code, err, "internal error: RuntimeError: boom second line; run with --debug", 1
    )
    code, _, err = run(capsys, "predict", "()", "--debug")
    assert code == 1 and "Traceback" in err and "RuntimeError: boom" in err


def test_version_and_predict_table(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("bracketlens 0.")
    code, out, _ = run(capsys, "predict", "()", ")(")
    header = out.splitlines()[1]
    assert "result" in header and out.count("right") == 2


def test_help_does_not_import_torch():
    code = "import sys, bracketlens.cli, bracketlens; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    import bracketlens

    assert set(bracketlens.__all__) <= set(dir(bracketlens))
    assert all(getattr(bracketlens, name) is not None for name in bracketlens.__all__)
    assert bracketlens.data.tokenize is bracketlens.tokenize  # subpackages load on access
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bracketlens.nothing  # noqa: B018


@pytest.mark.parametrize("command", ["analyze", "circuit"])
def test_one_layer_model_is_refused_not_crashed(capsys, tmp_path, command):
    """Localisation needs two heads after layer 0: a one-layer model is one line, no ValueError."""
    from bracketlens import save_checkpoint

    path = save_checkpoint(BracketTransformer(ModelConfig(n_layers=1)), tmp_path / "m.safetensors")
    code, _, err = run(capsys, command, "--n", "200", "--weights", path)
    assert_one_line(code, err, "needs a model of at least 2 layers")
