"""Report: render an :class:`~bracketlens.analysis.Analysis` as HTML, figures and PNGs.

Rendering only: nothing here computes a finding. :func:`~bracketlens.report.write.write_report`
writes the page; :func:`bracketlens.pipeline.analyze` produces what it renders.
"""
