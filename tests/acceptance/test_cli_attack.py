"""``bracketlens attack``: JSON shape, the table, and one-line errors."""

import json

import pytest

from bracketlens import is_balanced, save_checkpoint
from tests.acceptance.test_cli import run


@pytest.fixture(scope="module")
def weights(random_model, tmp_path_factory):
    """The random model as a checkpoint file, so that these tests need no course files."""
    return str(save_checkpoint(random_model, tmp_path_factory.mktemp("w") / "m.safetensors"))


def test_attack_json(capsys, weights):
    code, out, _ = run(
        capsys, "attack", "--weights", weights, "--budget", "400", "--top", "3", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 6
    assert all(set(r) == {"string", "label", "p_balanced"} for r in rows)
    assert sorted(r["label"] for r in rows) == [False] * 3 + [True] * 3
    assert all(r["label"] == is_balanced(r["string"]) for r in rows)
    # wrongest first: P(balanced) on the wrong class, in decreasing order
    wrong = [r["p_balanced"] if not r["label"] else 1 - r["p_balanced"] for r in rows]
    assert wrong == sorted(wrong, reverse=True)


def test_attack_table(capsys, weights):
    code, out, _ = run(capsys, "attack", "--weights", weights, "--budget", "300", "--top", "2")
    assert code == 0
    assert "300 of 300 evaluations" in out and "adversarial accuracy" in out
    assert "course A)(B" in out and "unbalanced strings, highest P(balanced)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "0"], "argument --budget: must be a whole number from 1 to"),
        (["--top", "0"], "argument --top: must be a whole number from 1 to"),
        (["--budget", "x"], "must be a whole number from 1 to 5,000,000; got 'x'"),
        (["--weights", "/nonexistent.pt"], "does not exist"),
    ],
)
def test_attack_user_errors_exit_2_with_one_line(capsys, argv, message):
    code, _, err = run(capsys, "attack", *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
