"""Discovery's patched runs split between two processes equal those of one."""

import copy

import torch

from bracketlens import BracketTransformer
from bracketlens.data import evaluation_set
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.shares import chunks_by_length, m_in_two


def test_rows_in_two_shares_equal_one_run(random_model: BracketTransformer) -> None:
    model = copy.deepcopy(random_model).double()  # float64: only rounding may differ
    runs = Runs.build(model, make_pairs(evaluation_set(450, seed=3)), "counterfactual", 0)
    shape = (3, len(runs.graph.receivers), len(runs.graph.senders), runs.width)
    cut = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    rows = torch.arange(len(runs.pairs)) % 3 != 0
    want = runs.m(cut, rows)
    got = m_in_two(runs, cut, rows)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert got[:, ~rows].isnan().all() and not got[:, rows].isnan().any()
    assert (want[0, rows] - want[1, rows]).abs().max() > 1e-3  # the circuits differ


def test_chunks_hold_every_row_once_shortest_first() -> None:
    lengths = torch.randint(0, 40, (1000,), generator=torch.Generator().manual_seed(1))
    rows = torch.arange(1000)[torch.arange(1000) % 7 != 0]
    chunks = chunks_by_length(lengths, rows, size=100)
    assert [len(c) for c in chunks] == [100] * 8 + [len(rows) - 800]
    assert sorted(r for c in chunks for r in c) == rows.tolist()
    flat = torch.tensor([r for c in chunks for r in c])
    assert bool((lengths[flat].diff() >= 0).all())
