"""The report's discovery stage: its sentence about the course's roles, its figures, and
what it says when the strings give too few pairs."""

from types import SimpleNamespace

import pytest

from bracketlens import BracketTransformer
from bracketlens.data import evaluation_set
from bracketlens.discovery.pairs import EDITS
from bracketlens.discovery.result import Budget, Circuit, Discovery, EdgeRow, Optimum, SizeRow
from bracketlens.discovery.stage import report_discovery, roles_sentence
from bracketlens.plots.discovery import DRAWN_EDGES, circuit_graph, faithfulness_curves

COMPONENTS = ["embed", "0.0", "0.1", "mlp0", "1.0", "1.1", "mlp1", "2.0", "2.1", "mlp2", "logits"]


def _discovery(circuit: Circuit | None, optimum: Optimum | None = None) -> Discovery:
    budgets = [Budget(0.1, 10, 0.5), Budget(0.5, 50, 0.97)]
    return Discovery(
        "eap-ig", "position", "counterfactual", 300, 290, {"seed": 0}, budgets, 0.7, 0.3,
        100, circuit, None if circuit else "none reaches 0.95", None, optimum,
        {e: [0.4, 0.9] for e in EDITS}, 3.0,
    )  # fmt: skip


def _loc(**roles: str | None) -> SimpleNamespace:
    names = ("elevation_head", "negative_head", "tally_head", "start_close_component")
    return SimpleNamespace(**{k: SimpleNamespace(text=roles.get(k)) for k in names})


def _circuit(components: tuple[str, ...], n_edges: int = 3) -> Circuit:
    edges = tuple(
        EdgeRow("embed", "2.0", "v", p % 5, 0.1 * (p + 1) * (-1) ** p) for p in range(n_edges)
    )
    return Circuit(edges, components, n_edges, 0.97, 0.96)


def test_the_sentence_names_the_roles_held_and_missed_and_what_else_is_there() -> None:
    d = _discovery(_circuit(("embed", "0.1", "2.0", "mlp1", "logits")))
    loc = _loc(elevation_head="2.0", negative_head="2.1", start_close_component="mlp 1")
    sentence = roles_sentence(d, loc)  # type: ignore[arg-type]
    assert "held-out f 0.960" in sentence
    assert "holds elevation head 2.0, start-close component mlp1" in sentence
    assert "not the negative head 2.1" in sentence
    assert sentence.endswith("beyond the template it holds 0.1.")


def test_without_a_circuit_the_sentence_reads_the_node_optimum() -> None:
    rows = (SizeRow(1, ("2.1",), 0.96, ("mlp0",), 0.1),)
    d = _discovery(None, Optimum(rows, ("2.1",), 0.96, ("2.1",)))
    sentence = roles_sentence(d, _loc(negative_head="2.1"))  # type: ignore[arg-type]
    assert sentence.startswith("No edge circuit up to 50% reaches f 0.95; the node optimum's")
    assert "holds negative head 2.1" in sentence and "nothing beyond the template" in sentence


def test_the_graph_draws_the_strongest_edges_once_each_and_the_nodes() -> None:
    small = circuit_graph(_circuit(("embed", "2.0"), 3), COMPONENTS, title="t")
    assert len(small.data) == 3 + 1
    widths = [t.line.width for t in small.data[:3]]
    assert widths == sorted(widths)  # strongest drawn last, on top
    nodes = set(zip(small.data[-1].x, small.data[-1].y, strict=True))
    assert nodes == {(x, p) for x in (0, 7) for p in range(3)}  # embed and 2.0 at 0, 1, 2
    big = circuit_graph(_circuit(("embed", "2.0"), DRAWN_EDGES + 40), COMPONENTS, title="t")
    assert len(big.data) == DRAWN_EDGES + 1


def test_the_curves_hold_every_edit_and_the_optimum_beside_the_method() -> None:
    rows = tuple(SizeRow(k, ("2.1",) * k, k / 2, ("mlp0",) * k, k / 4) for k in range(3))
    fig = faithfulness_curves(_discovery(None), Optimum(rows, ("2.1",), 1.0, None), title="t")
    names = [t.name for t in fig.data]
    assert names == ["all pairs", *EDITS, "node optimum", "eap-ig's top components"]
    assert list(fig.data[0].y) == pytest.approx([0.5, 0.97], abs=1e-12)
    assert list(fig.data[-1].y) == pytest.approx([0.0, 0.25, 0.5], abs=1e-12)


def test_too_few_strings_give_no_result_and_the_reason(bundled_model: BracketTransformer) -> None:
    found = report_discovery(bundled_model, evaluation_set(150, seed=0))
    assert found.result is None and found.to_json() is None
    assert found.reason is not None and "at least 200" in found.reason
    assert found.components[0] == "embed" and found.components[-1] == "logits"
    assert len(found.components) == 2 + 3 * 3
