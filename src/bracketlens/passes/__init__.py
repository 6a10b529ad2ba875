"""The analysis's forward passes: each batch runs once, reduced on the fly."""

from bracketlens.layernorm_fit import FitMoments
from bracketlens.passes.single_pass import (
    Gathered,
    Observation,
    ReadSlices,
    gather,
    layer0_moments,
    observe,
    read_slices,
)

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
