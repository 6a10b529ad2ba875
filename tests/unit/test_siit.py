"""Planted circuits: the specs' true edges, the SIIT losses' patches, ACDC and AUROC."""

import json

import numpy as np
import pytest
import torch

from bracketlens import BracketLensError, evaluation_set, tokenize
from bracketlens.discovery.acdc import acdc, distance, prune
from bracketlens.discovery.graph import Graph
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.model.transformer import BracketTransformer, ModelConfig
from bracketlens.planted.circuits import (
    EDGE_RULE,
    compiled_spec,
    counterfactual,
    course,
    draw_circuits,
    read_circuits,
    strict_edges,
    strict_nodes,
    true_components,
    true_edge_names,
    true_edges,
    two_sided,
    write_circuits,
    written_edges,
)
from bracketlens.planted.score import auroc, components_of, node_scores, traced_auroc
from bracketlens.planted.siit import Masks, SIITConfig, _patched, _site, _Stepper

CFG = ModelConfig()
GRAPH = Graph.of(CFG)


def _edge(graph, sender, receiver, inp):
    s = next(i for i, x in enumerate(graph.senders) if x.name == sender)
    r = next(i for i, x in enumerate(graph.receivers) if x.name == receiver and x.input == inp)
    return r, s


def _has(edges, sender, receiver, inp, pos):
    return bool(edges[(*_edge(GRAPH, sender, receiver, inp), pos)])


def test_course_true_edges_carry_the_high_level_variables():
    spec = course("c", tally=0, elevation="1.1", negative="2.0", read=1, seed=0)
    edges = true_edges(spec, GRAPH)
    for sender, receiver, inp, pos in [
        ("embed", "0.0", "v", 5),
        ("embed", "0.0", "v", 40),
        ("0.0", "mlp0", "mlp", 7),
        ("0.0", "mlp0", "mlp", 0),  # the suffix from position 0 is the whole string
        ("mlp0", "1.1", "v", 1),
        ("mlp0", "1.1", "v", 2),  # MLP 0 is one node at every position: read anywhere
        ("mlp0", "2.0", "v", 9),
        ("1.1", "mlp2", "mlp", 0),
        ("2.0", "mlp2", "mlp", 0),
        ("mlp2", "logits", "logits", 0),
    ]:
        assert _has(edges, sender, receiver, inp, pos), (sender, receiver, inp, pos)
    for sender, receiver, inp, pos in [
        ("embed", "0.0", "q", 5),  # queries and keys choose positions: no variable
        ("embed", "0.0", "k", 5),
        ("mlp0", "1.1", "k", 1),
        ("mlp0", "2.0", "q", 0),
        ("embed", "0.0", "v", 0),  # [start] is the same in every string
        ("embed", "0.0", "v", 41),  # the last position only ever holds [end]
        ("0.0", "mlp0", "mlp", 41),  # the suffix from [end] is empty
        ("1.1", "logits", "logits", 0),  # the readers reach the logits through MLP 2
        ("embed", "mlp0", "mlp", 3),  # the flags read the tally, not the tokens
        ("0.0", "mlp2", "mlp", 0),
    ]:
        assert not _has(edges, sender, receiver, inp, pos), (sender, receiver, inp, pos)
    assert not edges[[r for r, x in enumerate(GRAPH.receivers) if x.input in ("q", "k")]].any()
    assert true_components(spec) == ["0.0", "1.1", "2.0", "mlp0", "mlp2"]
    # no edge into or out of a component outside the circuit
    assert not edges[:, [i for i, s in enumerate(GRAPH.senders) if s.name in ("0.1", "mlp1")]].any()


def test_two_sided_tallies_carry_nothing_where_their_side_is_empty():
    edges = true_edges(two_sided("t", 0, "1.0", "2.1", seed=0), GRAPH)
    assert not _has(edges, "0.0", "mlp0", "mlp", 0) and _has(edges, "0.0", "mlp0", "mlp", 41)
    assert _has(edges, "0.1", "mlp0", "mlp", 0) and not _has(edges, "0.1", "mlp0", "mlp", 41)


def test_the_last_position_of_shorter_tokens_carries_nothing():
    # strings of at most 8 parens: position 9 only ever holds [end] or padding
    edges = true_edges(course("c", 0, "1.1", "2.1", read=0, seed=0), GRAPH, width=10)
    assert _has(edges, "embed", "0.0", "v", 8) and not _has(edges, "embed", "0.0", "v", 9)
    assert _has(edges, "0.0", "mlp0", "mlp", 8) and not _has(edges, "0.0", "mlp0", "mlp", 9)


def test_compiled_spec_reads_where_it_was_built_to():
    edges = true_edges(compiled_spec(), GRAPH)
    assert _has(edges, "2.0", "logits", "logits", 0) and _has(edges, "2.1", "logits", "logits", 0)
    assert _has(edges, "0.1", "mlp0", "mlp", 30) and not _has(edges, "0.1", "mlp0", "mlp", 10)
    assert _has(edges, "embed", "0.1", "v", 30) and not _has(edges, "embed", "0.1", "v", 10)
    assert _has(edges, "mlp0", "2.0", "v", 1) and not _has(edges, "mlp0", "2.0", "v", 2)
    assert _has(edges, "mlp0", "2.1", "v", 2)
    assert true_components(compiled_spec()) == ["0.0", "0.1", "2.0", "2.1", "mlp0"]


def test_strict_nodes_are_everything_outside_the_circuit():
    spec = two_sided("t", 0, "1.0", "2.1", seed=0)
    strict = strict_nodes(spec, CFG)
    assert not {c for c, _ in strict} & {"0.0", "0.1", "mlp0"}  # at every position
    assert ("1.0", 0) not in strict and ("1.0", 3) in strict and ("2.1", 0) not in strict
    assert {p for c, p in strict if c in ("2.0", "mlp2")} == {0} and ("mlp2", 0) not in strict
    # layer 1's other head and MLP at every position, 1.0 past position 0, and 2.0 at 0
    assert len(strict) == 42 + 42 + 41 + 1


def test_no_true_edge_touches_a_strict_node():
    for spec in [*draw_circuits(0), compiled_spec()]:
        true, strict = true_edges(spec, GRAPH), strict_edges(spec, GRAPH)
        assert true.any() and strict.any() and not (true & strict).any(), spec.name
        # every live edge into a component outside the circuit is strict
        outside = [r for r, rec in enumerate(GRAPH.receivers) if rec.name in ("0.1", "mlp1")]
        if spec.kind == "course" and spec.name != "compiled" and "0.1" not in true_components(spec):
            assert strict[outside].sum() == GRAPH.upstream[outside].sum() * strict.shape[-1]


def test_counterfactuals_carry_only_the_atoms_downstream():
    base = tokenize(["(())", "(())", ")(", "(("], pad_to=6).numpy()
    source = tokenize(["((", ")(", "(())", "()"], pad_to=6).numpy()
    spec = two_sided("t", 0, "1.0", "2.1", seed=0)
    # ")(" has a negative prefix and a positive suffix: taking only one keeps it unbalanced
    assert counterfactual(spec, "prefix_negative", base, source).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert counterfactual(spec, "prefix_tally", base, source).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert counterfactual(spec, "flags", base, source).tolist() == [False, False, True, True]
    c = course("c", 0, "2.0", "2.1", 1, seed=0)
    assert counterfactual(c, "elevation_zero", base, source).tolist() == [False, True, False, False]


def test_suite_file_is_written_once_and_read_back(tmp_path):
    specs = draw_circuits(3)
    assert len(specs) == 6 and specs == draw_circuits(3)
    assert {s.kind for s in specs} == {"course", "two_sided"}
    assert any(s.node("elevation_zero").layer == 1 for s in specs if s.kind == "course")
    path = write_circuits(specs, tmp_path / "suite.json")
    assert read_circuits(path) == specs
    written = written_edges(path)
    assert all(written[s.name] == true_edge_names(s, GRAPH) for s in specs)
    assert json.loads(path.read_text())[0]["edge_rule"] == EDGE_RULE
    # a suite file without the hand-built flag reads as trained circuits
    rows = json.loads(path.read_text())
    for row in rows:
        del row["built"]
    path.write_text(json.dumps(rows))
    read = read_circuits(path)
    assert read == specs and not any(s.built for s in read)
    with pytest.raises(BracketLensError, match="circuits are fixed"):
        write_circuits(specs, path)


def test_training_patches_match_the_measured_patches(random_model):
    """The training pass's in-batch patch and run_patched's patch give the same logits."""
    data = evaluation_set(40, seed=2)
    base = data.tokens[:20]
    source = torch.cat([base[1:], base[:1]])
    site = _site("1.0", (0,))
    measured = _patched(random_model, base, source, [site, _site("mlp0", None)])
    tokens = torch.cat([base, source])
    masks = Masks(3, 2, 40, tokens.shape[1])
    masks.set(torch.arange(20), site)
    masks.set(torch.arange(20), _site("mlp0", None))
    source_of = torch.cat([torch.arange(20, 40), torch.arange(20, 40)])
    trained = random_model.run_with_hooks(tokens, fwd_hooks=masks.hooks(source_of))[:20, 0]
    torch.testing.assert_close(trained, measured.to(trained.dtype), atol=1e-4, rtol=1e-4)
    # patching every node from the row itself changes nothing
    masks = Masks(3, 2, 20, base.shape[1])
    masks.z[:], masks.mlp[:] = True, True
    same = random_model.run_with_hooks(base, fwd_hooks=masks.hooks(torch.arange(20)))[:, 0]
    torch.testing.assert_close(same, random_model(base)[:, 0])


def test_step_loss_is_seeded_finite_and_its_labels_are_the_counterfactuals():
    spec = course("c", 1, "1.0", "2.1", read=0, seed=4)
    cfg = SIITConfig(batch_size=16, n_train=400)
    data = evaluation_set(400, seed=4)
    losses = []
    for _ in range(2):
        model = BracketTransformer()
        model.init_weights(seed=4)
        step = _Stepper(
            spec, model, data[data.seq_length >= 2], cfg, torch.Generator().manual_seed(4)
        )
        losses.append(float(step().detach()))
    assert np.isfinite(losses[0]) and losses[0] == losses[1]
    base, source = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    which = torch.tensor([2, 2, 2])  # elevation_zero
    tokens = step.data.tokens.numpy()
    want = counterfactual(spec, "elevation_zero", tokens[[0, 1, 2]], tokens[[3, 4, 5]])
    assert step._counterfactual(base, source, which).tolist() == want.astype(int).tolist()


def test_auroc_counts_pairs_and_ties_half():
    truth = torch.tensor([True, False, True, False])
    assert auroc(torch.tensor([3.0, 2.0, 1.0, 0.0]), truth) == pytest.approx(0.75)
    assert auroc(torch.tensor([1.0, 1.0, 1.0, 1.0]), truth) == pytest.approx(0.5)
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([True, True])) is None
    # MIB's traced form: the perfect circuit alone gives 1, the empty and full ones 0.5
    assert traced_auroc([truth], truth) == pytest.approx(1.0)
    assert traced_auroc([torch.zeros(4, dtype=torch.bool)], truth) == pytest.approx(0.5)
    assert traced_auroc([torch.tensor([True, True, False, False])], truth) == pytest.approx(0.5)


def test_node_scores_and_components_of_a_circuit():
    scores = torch.zeros(GRAPH.upstream.shape)
    r, s = _edge(GRAPH, "0.1", "mlp1", "mlp")
    scores[r, s] = -2.0
    node = node_scores(GRAPH, scores)
    names = [x.name for x in GRAPH.senders[1:]]
    assert {names[i] for i in node.nonzero()[:, 0].tolist()} == {"0.1", "mlp1"}
    assert float(node.sum()) == pytest.approx(4.0)
    kept = torch.zeros_like(GRAPH.upstream)
    kept[r, s] = True
    assert [names[i] for i in components_of(GRAPH, kept).nonzero()[:, 0]] == ["0.1", "mlp1"]


def _one_head_runs() -> Runs:
    """One layer, one head, and an MLP that writes nothing."""
    model = BracketTransformer(ModelConfig(n_layers=1, n_heads=1))
    model.init_weights(seed=5)
    with torch.no_grad():
        model.blocks[0].mlp.W_out.zero_()
    model.eval()
    model.requires_grad_(False)
    return Runs.build(model, make_pairs(evaluation_set(500, seed=5), 0), "counterfactual", 0)


def test_acdc_removes_exactly_the_edges_that_do_nothing():
    runs = _one_head_runs()
    rows = torch.ones(len(runs.pairs), dtype=torch.bool)
    kept = prune(runs, rows, tau=1e-9)
    names = {
        (runs.graph.senders[s].name, runs.graph.receivers[r].name, runs.graph.receivers[r].input)
        for r, s in kept.nonzero().tolist()
    }
    # the MLP writes nothing, position 0's embeddings are the same in both strings of a
    # pair, and only the head's output at position 0 is read: its keys and values remain
    assert names == {("embed", "0.0", "k"), ("embed", "0.0", "v"), ("0.0", "logits", "logits")}
    sweep = acdc(runs, rows, taus=(1e-9, 1e9))
    assert sweep.kept[1].sum() == 0 and torch.equal(sweep.kept[0], kept)
    assert sweep.faithfulness[0] == pytest.approx(1.0, abs=1e-4)
    assert float(sweep.scores.max()) == pytest.approx(1e-9)
    with pytest.raises(BracketLensError, match="ACDC distance"):
        acdc(runs, rows, kind="l2")


def test_distance_is_zero_for_the_model_itself_and_grows_with_the_change():
    m = torch.tensor([2.0, -1.0, 0.5])
    assert distance(m, m, "kl") == pytest.approx(0.0, abs=1e-7)
    assert 0 < distance(m, m * 0.5, "kl") < distance(m, m * 0.0, "kl")
    assert distance(m, m + 1, "logit_diff") == pytest.approx(1.0)
