import pytest
import torch

from bracketlens import BracketDataset, BracketLensError, tokenize
from bracketlens.activations import get_activations
from bracketlens.circuits.negative import (
    negative_feeders,
    negative_head_attention,
    wrong_way_positions,
)
from bracketlens.data.generate import evaluation_set
from bracketlens.data.truth import FailureGroup


def test_wrong_way_positions_read_suffixes():
    # "())(()": only the suffix "(()" (from position 4) has more "(" than ")"
    got = wrong_way_positions(tokenize(["())(()", "(()", "()"]))
    assert got[0].tolist() == [False, False, False, False, True, False, False, False]
    assert got[1, :5].tolist() == [False, True, False, False, False]
    assert not got[2].any()


def test_negative_head_attention_on_a_random_model(random_model):
    data = BracketDataset(["())(()", "(()", "((", "()", ")(()"])
    result = negative_head_attention(random_model, data, 2, 1)
    assert result.head == "2.1"
    assert 0 <= result.on_wrong_way.value <= 1
    assert result.uniform_baseline.n == int(data.failure_types.negative.sum())
    with pytest.raises(BracketLensError, match="goes negative"):
        negative_head_attention(random_model, BracketDataset(["()", "))"]), 2, 1)
    assert torch.isfinite(torch.tensor(result.lift))


def test_feeders_add_up_to_what_the_head_reads(random_model):
    """Summed over components, the feeders are the attention-weighted residual stream."""
    data = evaluation_set(600, seed=3)
    feeders = negative_feeders(random_model, data, 2, 1)
    assert feeders.head == "2.1"
    assert feeders.components.labels == [
        "embeds", "head 0.0", "head 0.1", "mlp 0", "head 1.0", "head 1.1", "mlp 1"
    ]  # fmt: skip
    assert feeders.components.values.shape == (7, 600)
    names = ["blocks.2.hook_resid_pre", "blocks.2.attn.hook_pattern"]
    acts = get_activations(random_model, data.tokens, names)
    row = acts["blocks.2.attn.hook_pattern"][:, 1, 0]
    read = (row * (acts["blocks.2.hook_resid_pre"] @ feeders.direction)).sum(-1)
    expected = read - read[data.labels].mean()  # the b_O terms are constant: centring drops them
    total = feeders.components.values.sum(0)
    assert (total - expected).abs().max() < 1e-4 * expected.abs().max()
    # the wrong-way part is part of the whole, and 0 where no suffix goes the wrong way
    never = ~wrong_way_positions(data.tokens).any(-1)
    assert feeders.from_wrong_way[:, never].abs().max() == 0
    assert 0 < feeders.ln_fit_r2 <= 1
    medians = feeders.group_medians(data.failure_groups)
    assert set(medians) == set(feeders.components.labels)
    balanced = feeders.components["mlp 1"][data.failure_groups == FailureGroup.BALANCED]
    assert medians["mlp 1"]["balanced"] == pytest.approx(float(balanced.median()))


def test_feeders_reject_a_bad_head(random_model):
    with pytest.raises(BracketLensError, match="head"):
        negative_feeders(random_model, evaluation_set(50, seed=0), 2, 5)
