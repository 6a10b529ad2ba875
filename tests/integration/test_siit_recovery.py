"""Circuits planted with SIIT: they pass acceptance, and EAP-IG ranks their true edges
above the strict ones.

``siit_course.safetensors`` is ``course-1`` of ``draw_circuits(0)`` (the tally in head
0.0, the elevation head 1.1 reading position 0, the negative head 2.1), trained by
``python benchmarks/ground_truth.py --cache DIR --jobs 2`` (1,500 steps at one thread,
886 s on 2 shared cores). The second test trains the same layout inside its own
budget, on strings of at most 8 parens (600 steps of 32 rows a group, about 30 s at one
thread).
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bracketlens import BracketDataset, BracketTransformer, evaluation_set, load_model
from bracketlens.data.tokens import PAD
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.scores import edge_scores
from bracketlens.planted.circuits import (
    CircuitSpec,
    course,
    draw_circuits,
    strict_edges,
    true_edges,
)
from bracketlens.planted.score import auroc
from bracketlens.planted.siit import (
    MIN_IIA,
    SIITConfig,
    accepted,
    held_out_set,
    measure,
    train_circuit,
)

FIXTURE = Path(__file__).with_name("siit_course.safetensors")
SMALL = SIITConfig(steps=600, batch_size=32, n_train=8_000, n_eval=400, max_parens=8)


def _ranking(
    model: BracketTransformer, spec: CircuitSpec, data: BracketDataset
) -> tuple[float, float]:
    """EAP-IG's edge AUROC of the true edges against the strict ones, on every pair of
    ``data``, and the ratio of their mean absolute scores."""
    pairs = make_pairs(data, 0)
    runs = Runs.build(model, pairs, "counterfactual", 0)
    live = runs.graph.live((pairs.clean != PAD).any(0))
    scores = edge_scores(runs, torch.ones(len(pairs), dtype=torch.bool), "eap-ig", live).abs()
    true = true_edges(spec, runs.graph, runs.width) & live
    strict = strict_edges(spec, runs.graph, runs.width) & live
    both = true | strict
    score = auroc(scores[both], true[both])
    assert score is not None
    return score, float(scores[true].mean() / scores[strict].mean())


@pytest.mark.slow(minutes=1)
def test_planted_circuit_is_accepted_and_eap_ig_ranks_its_edges_above_the_strict_ones():
    spec = draw_circuits(0)[1]
    model = load_model(str(FIXTURE))
    record = measure(model, spec, evaluation_set(300, seed=11))
    assert record["accuracy"] >= 0.97
    assert min(record["iia"].values()) >= MIN_IIA, record["iia"]
    assert record["strict_worst"]["effect"] <= record["strict_bound"], record["strict_worst"]
    score, ratio = _ranking(model, spec, evaluation_set(600, seed=3))
    # measured 0.962 (0.957 against every live edge): the true edges it ranks lowest sit
    # at positions few pairs edit (head 2.1's values past position 30), the strict ones
    # it ranks highest leave head 1.1 at position 7, whose resample effect (0.27) is
    # within SIIT's bound (0.35) but not zero
    assert score >= 0.94
    assert ratio >= 10


@pytest.mark.slow(minutes=1)
def test_a_small_circuit_trained_here_is_accepted_and_eap_ig_ranks_its_true_edges_first():
    spec = course("small", tally=0, elevation="1.1", negative="2.1", read=0, seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the budget is one thread's
    try:
        planted = train_circuit(spec, SMALL)
    finally:
        torch.set_num_threads(threads)
    ok, why = accepted(planted.record)
    assert ok, why
    strings = held_out_set(replace(SMALL, n_eval=1_000), seed=5)  # about 500 pairs
    score, ratio = _ranking(planted.model, spec, strings)
    # measured 0.911 (true edges' mean |score| 56 times the strict ones'), the whole test
    # 29 to 47 s on one shared core: the true edges it ranks lowest are the readers' values at
    # positions of MLP 0 they read little; the strict ones highest leave the other heads
    assert score >= 0.88
    assert ratio >= 20
