"""One small circuit planted with SIIT: EAP-IG ranks its true edges above the strict ones."""

import pytest
import torch

from bracketlens import evaluation_set
from bracketlens.data.tokens import PAD
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.scores import edge_scores
from bracketlens.planted.circuits import course, strict_edges, true_edges
from bracketlens.planted.score import auroc
from bracketlens.planted.siit import SIITConfig, train_circuit

STEPS = 250


@pytest.mark.slow(minutes=1)
def test_eap_ig_ranks_a_planted_circuits_edges_above_the_strict_ones():
    torch.set_num_threads(1)
    spec = course("small", tally=1, elevation="1.0", negative="2.1", read=1, seed=7)
    cfg = SIITConfig(steps=STEPS, batch_size=32, n_train=6000, n_eval=300)
    planted = train_circuit(spec, cfg)
    pairs = make_pairs(evaluation_set(600, seed=3), 0)
    runs = Runs.build(planted.model, pairs, "counterfactual", 0)
    live = runs.graph.live((pairs.clean != PAD).any(0))
    scores = edge_scores(runs, torch.ones(len(pairs), dtype=torch.bool), "eap-ig", live).abs()
    true = true_edges(spec, runs.graph, runs.width) & live
    strict = strict_edges(spec, runs.graph, runs.width) & live
    assert not (true & strict).any()
    both = true | strict
    score = auroc(scores[both], true[both])
    assert score is not None and score >= 0.9, (score, planted.record["iia"])
