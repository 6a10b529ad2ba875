"""Moved: ``bracketlens circuit`` runs :func:`bracketlens.pipeline.run` without the
circuit analyses; these names remain for old callers."""

from __future__ import annotations

from bracketlens.analysis import Analysis
from bracketlens.data.dataset import BracketDataset
from bracketlens.model.transformer import BracketTransformer

CIRCUIT_STAGES = ("interventions", "mean_ablation")


def verify_circuit(
    model: BracketTransformer, data: BracketDataset, seed: int = 0, causal_n: int = 5_000
) -> Analysis:
    """Localise on one half of ``data``, then ablate, resample and patch on the other."""
    from bracketlens.pipeline import run

    return run(model, data, seed=seed, causal_n=causal_n, stages=CIRCUIT_STAGES)


def verdict_json(analysis: Analysis) -> dict[str, object]:
    """The JSON of ``bracketlens circuit`` (:meth:`Analysis.to_json`)."""
    return analysis.to_json()
