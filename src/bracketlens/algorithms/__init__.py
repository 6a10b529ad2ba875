"""Algorithm discovery: which high-level causal model a bracket classifier runs, and where.

>>> from bracketlens.algorithms import explain, MODELS   # doctest: +SKIP
>>> result = explain(model, data)                          # doctest: +SKIP
>>> result.best_model, result.verdict                      # doctest: +SKIP
"""

from bracketlens.algorithms.causal import (
    MODELS,
    CausalModel,
    Variable,
    register,
    suffix_elevation_model,
)
from bracketlens.algorithms.explain import explain
from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.pairs import KINDS, PairCounts
from bracketlens.algorithms.result import Alignment, Explanation, ModelScore, ScreenMap
from bracketlens.algorithms.search import Search

__all__ = [
    "KINDS",
    "MODELS",
    "Alignment",
    "CausalModel",
    "Explanation",
    "Location",
    "ModelScore",
    "PairCounts",
    "ScreenMap",
    "Search",
    "Site",
    "Variable",
    "explain",
    "register",
    "suffix_elevation_model",
]
