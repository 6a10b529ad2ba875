"""Planted-circuit suite: the declared space, the suite file, and the IIT recipe's pieces."""

import pytest
import torch

from bracketlens import BracketLensError, evaluation_set, tokenize
from bracketlens.algorithms import Search
from bracketlens.algorithms.locations import sites
from bracketlens.model.config import ModelConfig
from bracketlens.planted import (
    IITConfig,
    Placement,
    draw_suite,
    plantable_search,
    read_suite,
    space,
    write_suite,
)
from bracketlens.planted.iit import (
    iia_score,
    interchange_labels,
    patched_logits,
    source_z,
    strict_nodes,
    train_planted,
)


def test_space_never_uses_position_1_or_a_layer_0_negative():
    assert all(pos != 1 for *_, pos in space())
    assert all(layer in (0, 1) for _, layer, _, _ in space())
    assert not any(v == "negative" and layer == 0 for v, layer, _, _ in space())
    with pytest.raises(BracketLensError, match="cannot sit"):
        Placement("x", "negative", 0, 0, 2, seed=0)
    with pytest.raises(BracketLensError, match="position"):
        Placement("x", "total_elevation", 0, 0, 1, seed=0)


def test_suite_is_seeded_alternates_variables_and_is_fixed_on_disk(tmp_path):
    suite = draw_suite(6, seed=11)
    assert suite == draw_suite(6, seed=11) and suite != draw_suite(6, seed=12)
    assert [p.variable for p in suite] == ["total_elevation", "negative"] * 3
    assert len({(p.variable, p.layer, p.head, p.position) for p in suite}) == 6
    path = write_suite(suite, tmp_path / "suite.json")
    assert read_suite(path) == suite
    with pytest.raises(BracketLensError, match="placements are fixed"):
        write_suite(draw_suite(6, seed=12), path)


def test_interchange_labels_follow_the_high_level_model():
    base = tokenize(["(())", "((", "()()", ")(", "((", "(())"], pad_to=6)
    source = tokenize(["((", "(())", ")(", "()()", "()()", "()()"], pad_to=6)
    # "(())" takes the non-zero elevation of "((" and is unbalanced; "((" keeps its own
    # negative failure whatever elevation it takes; ")(" takes the level "()()" ...
    assert interchange_labels("total_elevation", base, source).tolist() == [0, 0, 1, 0, 0, 1]
    # ... and with "()()"'s "never positive" the level ")(" becomes balanced
    assert interchange_labels("negative", base, source).tolist() == [0, 0, 0, 1, 0, 1]


def test_patching_a_head_with_its_own_activations_changes_nothing(random_model):
    tokens = evaluation_set(50, seed=1).tokens
    z = source_z(random_model, tokens, 1)
    torch.testing.assert_close(
        patched_logits(random_model, tokens, z, 1, 0, 2), random_model(tokens)[:, 0]
    )


def test_training_is_seeded_and_records_iia_everywhere():
    placement = Placement("t", "total_elevation", 0, 1, 2, seed=3)
    cfg = IITConfig(steps=2, batch_size=8, n_train=400, n_eval=100)
    a, b = train_planted(placement, cfg), train_planted(placement, cfg)
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    assert a.record["planted"] == placement.to_json()
    assert len(a.record["iia"]) == 3 * 2 * 4
    assert all(0.0 <= v <= 1.0 for v in a.record["iia"].values())


def test_iia_gives_breaking_the_model_and_doing_nothing_one_half():
    base_label = torch.tensor([1, 1, 0, 0])
    want = torch.tensor([0, 1, 1, 0])  # the swap changes the answer of pairs 0 and 2
    assert iia_score(want, want, base_label) == 1.0
    assert iia_score(base_label, want, base_label) == 0.5  # the patch does nothing
    assert iia_score(1 - base_label, want, base_label) == 0.5  # the patch flips everything


def test_strict_nodes_leave_the_planted_node_and_the_negative_check_free():
    elevation = Placement("e", "total_elevation", 0, 1, 2, seed=0)
    nodes = strict_nodes(elevation)
    assert (0, 1, 2) not in nodes and (0, 1, 0) in nodes and (1, 0, 1) in nodes
    assert all(pos in (0, 1) for *_, pos in nodes)  # suffixes from position 2 on stay free
    negative = Placement("n", "negative", 1, 0, 3, seed=0)
    assert (1, 0, 3) not in strict_nodes(negative)
    assert {layer for layer, *_ in strict_nodes(negative)} == {1}
    assert len(strict_nodes(negative)) == 7


def test_the_plantable_search_looks_only_where_a_variable_may_be_planted():
    search = plantable_search(Search.quick())
    assert search.das_steps == Search.quick().das_steps  # the rest of the base is kept
    chosen = [s for s in sites(ModelConfig()) if search.sites(s)]
    assert chosen and all(s.head is not None and s.layer in (0, 1) for s in chosen)
    assert {(s.layer, s.head) for s in chosen} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert search.positions((2,)) and not search.positions((1, 2))
