"""A circuit planted with SIIT: it passes acceptance, and EAP-IG ranks its true edges
above the strict ones.

``siit_course.safetensors`` is ``course-1`` of ``draw_circuits(0)`` (the tally in head
0.0, the elevation head 1.1 reading position 0, the negative head 2.1), trained by
``python benchmarks/ground_truth.py --cache DIR --jobs 2`` (1,500 steps at one thread,
886 s on 2 shared cores): retraining inside the test does not fit its budget.
"""

from pathlib import Path

import pytest
import torch

from bracketlens import evaluation_set, load_model
from bracketlens.data.tokens import PAD
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.scores import edge_scores
from bracketlens.planted.circuits import draw_circuits, strict_edges, true_edges
from bracketlens.planted.score import auroc
from bracketlens.planted.siit import MIN_IIA, measure

FIXTURE = Path(__file__).with_name("siit_course.safetensors")


@pytest.mark.slow(minutes=1)
def test_planted_circuit_is_accepted_and_eap_ig_ranks_its_edges_above_the_strict_ones():
    spec = draw_circuits(0)[1]
    model = load_model(str(FIXTURE))
    record = measure(model, spec, evaluation_set(300, seed=11))
    assert record["accuracy"] >= 0.97
    assert min(record["iia"].values()) >= MIN_IIA, record["iia"]
    assert record["strict_worst"]["effect"] <= record["strict_bound"], record["strict_worst"]
    pairs = make_pairs(evaluation_set(600, seed=3), 0)
    runs = Runs.build(model, pairs, "counterfactual", 0)
    live = runs.graph.live((pairs.clean != PAD).any(0))
    scores = edge_scores(runs, torch.ones(len(pairs), dtype=torch.bool), "eap-ig", live).abs()
    true = true_edges(spec, runs.graph, runs.width) & live
    strict = strict_edges(spec, runs.graph, runs.width) & live
    both = true | strict
    # measured 0.962 (0.957 against every live edge): the true edges it ranks lowest sit
    # at positions few pairs edit (head 2.1's values past position 30), the strict ones
    # it ranks highest leave head 1.1 at position 7, whose resample effect (0.27) is
    # within SIIT's bound (0.35) but not zero
    score = auroc(scores[both], true[both])
    assert score is not None and score >= 0.94
    assert float(scores[true].mean()) >= 10 * float(scores[strict].mean())
