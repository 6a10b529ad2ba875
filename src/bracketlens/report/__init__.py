"""Report: analyze (findings) and render (HTML, PNG, JSON)."""

from bracketlens.report.analyze import Findings, analyze
from bracketlens.report.write import write_report

__all__ = ["Findings", "analyze", "write_report"]
