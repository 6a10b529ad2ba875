"""Circuit discovery: the graph, the pairs, the patched runs, faithfulness and the optimum."""

import copy

import numpy as np
import pytest
import torch

from bracketlens import BracketDataset, BracketTransformer
from bracketlens.compiled import build_compiled
from bracketlens.data import evaluation_set
from bracketlens.data.truth import failure_types_of, is_balanced
from bracketlens.discovery.discover import discover
from bracketlens.discovery.graph import Graph
from bracketlens.discovery.optimum import node_circuits_m
from bracketlens.discovery.pairs import EDITS, edit, make_pairs
from bracketlens.discovery.runs import Runs, metric
from bracketlens.discovery.single import single_edge_m
from bracketlens.errors import BracketLensError
from bracketlens.interventions.edges import edge_hooks, split_inputs
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.runner import run_patched
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name


def _runs(model: BracketTransformer, n: int = 500, ablation: str = "counterfactual") -> Runs:
    return Runs.build(model, make_pairs(evaluation_set(n, seed=3)), ablation, 0)


def test_the_course_architecture_has_100_component_edges() -> None:
    graph = Graph.of(ModelConfig())
    assert graph.n_edges == 100
    assert Graph.of(ModelConfig(n_layers=2, n_heads=3)).n_edges == 3 * 3 + 4 + 5 * 9 + 8 + 9
    real = torch.tensor([True] * 10 + [False] * 2)
    live = graph.live(real)
    # position 0: every edge; other real positions: all but the last layer's queries,
    # MLP and logits (7 senders x 2 heads into q, 9 into the MLP, 10 into the logits)
    assert int(live[:, :, 0].sum()) == 100
    assert int(live[:, :, 1].sum()) == 100 - 14 - 9 - 10
    assert int(live[:, :, 10:].sum()) == 0


@pytest.mark.parametrize("kind", EDITS)
def test_each_edit_gives_its_failure_type(kind: str) -> None:
    rng = np.random.default_rng(0)
    want = {
        "open_to_close": (True, False),
        "close_to_open": (True, True),
        "swap_block": (False, True),
    }[kind]
    for s in evaluation_set(400, seed=1).strings:
        if not is_balanced(s) or not s:
            continue
        edited = edit(s, kind, rng)
        types = failure_types_of(edited)
        assert (types.total_elevation, types.negative) == want, (s, edited)


def test_pairs_drop_and_count_unusable_strings() -> None:
    data = evaluation_set(600, seed=2)
    pairs = make_pairs(data)
    balanced = sum(1 for s in data.strings if is_balanced(s) and s)
    assert pairs.n_pairs == balanced
    assert pairs.n_dropped == len(data) - balanced
    assert torch.equal(pairs.clean[: pairs.n_pairs], pairs.corrupt[pairs.n_pairs :])
    with pytest.raises(BracketLensError, match="at least 200"):
        make_pairs(BracketDataset(["()"] * 150 + [")("] * 150))


@pytest.mark.parametrize("ablation", ["counterfactual", "mean", "resample"])
def test_the_full_and_the_empty_circuit_have_faithfulness_1_and_0(
    bundled_model: BracketTransformer, ablation: str
) -> None:
    runs = _runs(bundled_model, ablation=ablation)
    shape = (len(runs.graph.receivers), len(runs.graph.senders), 1)
    m = runs.m(torch.stack([torch.zeros(shape), torch.ones(shape)]))
    f, span = runs.faithfulness(m)
    torch.testing.assert_close(f, torch.tensor([1.0, 0.0]), rtol=0, atol=1e-5)
    assert span > 1.0


def test_the_empty_circuit_is_the_counterfactual_run(bundled_model: BracketTransformer) -> None:
    runs = _runs(bundled_model)
    with torch.no_grad():
        logits = bundled_model(runs.pairs.corrupt, class_only=True)[:, 0]
    torch.testing.assert_close(runs.m_empty, metric(logits, runs.pairs.sign), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    # a value input, a query input (its change taken with the block's keys and values),
    # and the last block's query at position 0 (taken alone)
    ("head", "kind", "position"),
    [("2.1", "v", 3), ("1.0", "q", 3), ("2.1", "q", 0)],
)
def test_patching_one_edge_equals_a_hooked_run_with_that_input_changed(
    random_model: BracketTransformer, head: str, kind: str, position: int
) -> None:
    model = copy.deepcopy(random_model).double()
    runs = _runs(model, n=450)
    graph = runs.graph
    sender = [s.name for s in graph.senders].index("mlp0")
    receiver = next(i for i, r in enumerate(graph.receivers) if r.name == head and r.input == kind)
    cut = torch.zeros(1, len(graph.receivers), len(graph.senders), runs.width)
    cut[0, receiver, sender, position] = 1.0
    patched = runs.m(cut)[0]
    names = [act_name("mlp_out", 0)]
    with torch.no_grad():
        _, clean = model.run_with_cache(runs.pairs.clean, names_filter=names)
        _, corrupt = model.run_with_cache(runs.pairs.corrupt, names_filter=names)
    change = corrupt[names[0]][:, position] - clean[names[0]][:, position]

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        act[:, position, int(head[-1])] += change
        return act

    hooks = [(act_name(f"{kind}_input", int(head[0])), hook)]
    with torch.no_grad(), split_inputs(model), model.hooks(fwd_hooks=hooks):
        logits = model(runs.pairs.clean)[:, 0]
    torch.testing.assert_close(patched, metric(logits, runs.pairs.sign), rtol=1e-6, atol=1e-6)
    assert (patched - runs.m_model).abs().max() > 1e-3  # the edge matters


def test_node_circuits_equal_their_induced_edge_circuits(bundled_model: BracketTransformer) -> None:
    runs = _runs(bundled_model, n=420)
    subsets, m = node_circuits_m(runs)
    assert len(subsets) == 512
    for i in (0, 37, 300, 511):
        cut = 1 - runs.graph.node_edges(subsets[i]).float()[None, :, :, None]
        torch.testing.assert_close(runs.m(cut)[0], m[i], rtol=0, atol=1e-4)


def _replace(source: torch.Tensor, head: int | None) -> Hook:
    """A hook setting an output (one head's, with ``head``) to ``source``, row by row."""

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        part = source[:, : act.shape[1]]
        if head is None:
            act[:] = part
        else:
            act[:, :, head] = part
        return act

    return hook


def _node_patched_m(runs: Runs, kept: torch.Tensor) -> torch.Tensor:
    """``m`` of every row with each removed component's output set to its counterfactual,
    in one plain patched run to the logits."""
    corrupt = runs.corrupt.expand(len(runs.pairs), -1, -1, -1)
    removed = [s for s in range(1, len(runs.graph.senders)) if not kept[s - 1]]

    def per_batch(rows: torch.Tensor) -> list[tuple[str, Hook]]:
        senders = [runs.graph.senders[s] for s in removed]
        return [
            (sender.hook, _replace(corrupt[rows, s], sender.head))
            for s, sender in zip(removed, senders, strict=True)
        ]

    return metric(run_patched(runs.model, runs.pairs.clean, per_batch=per_batch), runs.pairs.sign)


@pytest.mark.parametrize(
    ("ablation", "shape"),
    # the course's layout (two early layers of two heads), and three early layers of one head
    [
        ("counterfactual", dict(n_layers=3, n_heads=2, d_head=4)),
        ("mean", dict(n_layers=4, n_heads=1, d_head=8)),
    ],
)
def test_node_circuits_equal_plain_node_patched_runs(ablation: str, shape: dict[str, int]) -> None:
    model = BracketTransformer(ModelConfig(**shape, d_model=8, d_mlp=8))
    model.init_weights(seed=2, std=1.5)
    model = model.double()  # float64: the two computations agree to rounding
    runs = _runs(model, n=420, ablation=ablation)
    subsets, m = node_circuits_m(runs)
    for i in (0, 5, 37, 170, 200, 255, len(subsets) - 1):
        want = _node_patched_m(runs, subsets[i])
        torch.testing.assert_close(m[i], want, rtol=0, atol=1e-9)
    assert (m[0] - m[-1]).abs().max() > 1e-3  # the circuits differ


def test_the_compiled_models_node_optimum_is_the_circuit_it_was_built_with() -> None:
    found = discover(build_compiled(), evaluation_set(500, seed=0), method="eap", level="position")
    assert found.optimum is not None
    assert set(found.optimum.best) == {"0.0", "0.1", "mlp0", "2.0", "2.1"}
    assert found.optimum.best_faithfulness == pytest.approx(1.0, abs=1e-4)


def test_a_random_model_has_no_faithfulness() -> None:
    model = BracketTransformer()
    model.init_weights(seed=0)
    model.eval().requires_grad_(False)
    found = discover(model, evaluation_set(500, seed=0), method="eap", level="component")
    out = found.to_json()
    assert out["circuit"] is None and out["cpr"] is None and out["optimum"] is None
    assert all(b["faithfulness"] is None for b in out["budgets"])  # type: ignore[attr-defined]
    assert "below" in str(out["faithfulness_null_reason"])


def test_single_edge_runs_equal_patching_each_edge_alone(random_model: BracketTransformer) -> None:
    model = copy.deepcopy(random_model).double()  # float64: the two runs agree to rounding
    runs = Runs.build(
        model, make_pairs(evaluation_set(100, seed=3), minimum=20), "counterfactual", 0
    )
    rows = torch.zeros(len(runs.pairs), dtype=torch.bool)
    rows[::2] = True
    for width in (1, runs.width):  # component level, position level
        edges = _one_edge_per_receiver(runs.graph, width)
        where = edges.nonzero()
        cut = torch.zeros(len(where), *edges.shape, dtype=torch.float64)
        cut[torch.arange(len(where)), where[:, 0], where[:, 1], where[:, 2]] = 1.0
        want = runs.m(cut, rows)[:, rows].mean(1)
        got = single_edge_m(runs, rows, edges)[edges]
        # the metric is taken in float32 (values about 1): rounding at 1e-6
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=1e-5)
        assert (want - runs.m_model[rows].mean()).abs().max() > 1e-3  # the edges matter
        unmoved = single_edge_m(runs, rows, edges, scale=0.0)[edges]
        base = runs.m_model[rows].double().mean().expand_as(unmoved)
        torch.testing.assert_close(unmoved, base, rtol=0, atol=1e-5)


def _one_edge_per_receiver(graph: Graph, width: int) -> torch.Tensor:
    """One edge into every receiver input (its latest sender), at position 0 for the last
    layer's query and MLP and the logits, elsewhere at one of positions 0 to 5."""
    edges = torch.zeros(len(graph.receivers), len(graph.senders), width, dtype=torch.bool)
    for r, rec in enumerate(graph.receivers):
        at_0 = rec.input == "logits" or (rec.layer == graph.n_layers - 1 and rec.input != "k")
        p = 0 if at_0 or width == 1 else r % 6
        edges[r, int(graph.upstream[r].nonzero()[-1]), p] = True
    return edges


def test_edge_patching_is_differentiable_in_the_cut() -> None:
    model = BracketTransformer(ModelConfig(n_layers=2, n_heads=2, d_head=4, d_model=8, d_mlp=8))
    model.init_weights(seed=1, std=1.0)
    model = model.double().requires_grad_(False)
    runs = Runs.build(
        model, make_pairs(evaluation_set(60, seed=3), minimum=10), "counterfactual", 0
    )
    tokens, corrupt = runs.pairs.clean[:12], runs.corrupt[:12]
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(len(runs.graph.receivers), len(runs.graph.senders), runs.width, generator=gen)
    base = base.double()

    def m_of(cut: torch.Tensor) -> torch.Tensor:
        hooks = edge_hooks(runs.sites, corrupt, cut[None].expand(len(tokens), -1, -1, -1))
        with split_inputs(model), model.hooks(fwd_hooks=hooks):
            logits = model(tokens, class_only=True)[:, 0]  # float64 (the metric rounds to float32)
            return (runs.pairs.sign[:12] * (logits[:, 1] - logits[:, 0])).sum()

    cut = base.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(m_of(cut), cut)
    r, s, p = 9, 1, 2  # layer 1 head 0's value input from head 0.0 at position 2
    step = torch.zeros_like(base)
    step[r, s, p] = 1e-6
    with torch.no_grad():
        slope = (m_of(base + step) - m_of(base - step)) / 2e-6
    torch.testing.assert_close(grad[r, s, p], slope, rtol=1e-5, atol=1e-7)
    assert abs(float(slope)) > 1e-3
