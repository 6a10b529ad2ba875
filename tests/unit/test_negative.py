import pytest
import torch

from bracketlens import BracketDataset, BracketLensError, tokenize
from bracketlens.circuits.negative import negative_head_attention, wrong_way_positions


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
