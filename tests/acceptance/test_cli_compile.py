"""`bracketlens compile` and the built-in weights name `compiled`."""

import json

from bracketlens.cli import main
from bracketlens.cli.commands import weights_label
from bracketlens.model import read_sidecar
from bracketlens.weights.resolve import load_model


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_writes_weights_and_a_sidecar_with_the_roles(capsys, tmp_path):
    out = tmp_path / "c.safetensors"
    code, stdout, _ = run(capsys, "compile", "--out", str(out))
    assert code == 0 and "hand-built model written" in stdout
    side = read_sidecar(out)
    assert side["hand_built"] is True
    assert side["roles"]["elevation_head"] == "2.0" and side["roles"]["tally_head"] == "0.0"
    assert side["command"].startswith("bracketlens compile")
    import torch

    assert torch.equal(load_model(out).W_U, load_model("compiled").W_U)
    assert "hand-built" in weights_label(str(out))


def test_compile_refuses_to_overwrite_unless_forced(capsys, tmp_path):
    out = tmp_path / "c.safetensors"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, "compile", "--out", str(out))
    assert code == 2 and "exists; choose another path or pass --force" in err
    assert out.read_bytes() == b"keep me"
    assert run(capsys, "compile", "--out", str(out), "--force")[0] == 0


def test_weights_compiled_is_built_in_and_a_path_reads_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compiled").write_text("not a checkpoint")
    code, out, _ = run(capsys, "predict", "(())", ")(", "--weights", "compiled", "--json")
    assert code == 0
    assert [r["p_balanced"] > 0.5 for r in json.loads(out)] == [True, False]
    code, _, err = run(capsys, "predict", "()", "--weights", "./compiled")
    assert code == 2 and "unknown checkpoint format" in err
    assert weights_label("compiled").startswith("compiled (hand-built")
    assert weights_label(None) == "bundled default"


def test_help_says_how_a_file_named_compiled_is_read(capsys):
    code, out, _ = run(capsys, "predict", "--help")
    assert code == 0 and "./compiled" in out
