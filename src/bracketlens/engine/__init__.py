"""The single-pass analysis engine: one forward pass, reduced on the fly."""

from bracketlens.engine.moments import FitMoments
from bracketlens.engine.single_pass import Gathered, gather

__all__ = ["FitMoments", "Gathered", "gather"]
