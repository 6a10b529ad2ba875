"""``bracketlens explain``: one-line errors for samples it cannot use (the runs are in the tiers below)."""

import pytest

from tests.acceptance.test_cli import run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "0"], "argument --n: must be a whole number from 1 to"),
        (["--n", "10"], "at least 40 strings"),
        (["--weights", "/nonexistent.safetensors"], "does not exist"),
    ],
)
def test_explain_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "explain", *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
