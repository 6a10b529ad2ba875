"""The analysis's forward passes: each batch runs once, reduced on the fly."""

from bracketlens.engine.single_pass import (
    Gathered,
    Observation,
    ReadSlices,
    gather,
    layer0_moments,
    observe,
    read_slices,
)
from bracketlens.layernorm_fit import FitMoments

__all__ = [
    "FitMoments",
    "Gathered",
    "Observation",
    "ReadSlices",
    "gather",
    "layer0_moments",
    "observe",
    "read_slices",
]
