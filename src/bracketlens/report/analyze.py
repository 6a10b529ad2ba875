"""Moved: the analysis is :func:`bracketlens.pipeline.analyze`, its result
:class:`bracketlens.analysis.Analysis` (re-exported here under its old name, ``Findings``)."""

from bracketlens.analysis import Analysis, model_checksum
from bracketlens.pipeline import analyze

Findings = Analysis

__all__ = ["Analysis", "Findings", "analyze", "model_checksum"]
