"""Moved: :mod:`bracketlens.layernorm_fit` holds the LayerNorm fitter (re-exported here)."""

from bracketlens.layernorm_fit import FitMoments

__all__ = ["FitMoments"]
