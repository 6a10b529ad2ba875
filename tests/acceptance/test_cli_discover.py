"""``bracketlens discover``: the JSON schema, and one-line errors."""

import json

import pytest

from bracketlens.discovery.pairs import EDITS
from tests.acceptance.test_cli import run

KEYS = {"method", "level", "ablation", "n_pairs", "n_dropped", "split", "budgets", "cpr", "cmd"}
KEYS |= {"n_live_edges", "circuit", "optimum"}


def test_discover_json_has_the_schema(capsys):
    code, out, _ = run(
        capsys, "discover", "--weights", "compiled", "--n", "500", "--method", "eap", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert set(result) >= KEYS
    assert (result["method"], result["level"], result["ablation"]) == (
        "eap",
        "position",
        "counterfactual",
    )
    assert [b["fraction"] for b in result["budgets"]][-1] == 0.5
    assert {"fraction", "n_edges", "faithfulness", "by_edit"} == set(result["budgets"][0])
    assert set(result["budgets"][0]["by_edit"]) == set(EDITS)
    circuit = result["circuit"]
    assert set(circuit) == {
        "edges",
        "components",
        "n_edges",
        "faithfulness",
        "faithfulness_held_out",
    }
    assert {"sender", "receiver", "input", "position", "score"} == set(circuit["edges"][0])
    assert circuit["faithfulness_held_out"] >= 0.95
    assert set(result["optimum"]["best"]["components"]) == {"0.0", "0.1", "mlp0", "2.0", "2.1"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "100"], "at least 200 balanced"),
        (["--method", "magic"], "invalid choice"),
    ],
)
def test_discover_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "discover", *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
