"""Report: render an analysis as HTML, figures and PNGs (``analyze`` is re-exported)."""

from bracketlens.analysis import Analysis
from bracketlens.pipeline import analyze
from bracketlens.report.write import write_report

Findings = Analysis

__all__ = ["Analysis", "Findings", "analyze", "write_report"]
