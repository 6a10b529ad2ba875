"""Write a report folder atomically: index.html, findings.json, figures/*.png.

The folder is built under a temporary name beside the target and moved into
place at the end, so a failure never leaves a half-written report.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bracketlens.errors import BracketLensError
from bracketlens.report.analyze import Findings
from bracketlens.report.figures import Figure, all_figures
from bracketlens.report.render import render_html


def check_report_dir(out: Path) -> None:
    """Refuse a target that exists and is not an earlier report (we never clobber other files)."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "findings.json").exists())
    ):
        raise BracketLensError(
            f"{out} exists and is not a bracketlens report folder; choose another --out"
        )
    parent = out.resolve().parent
    if not parent.is_dir():
        raise BracketLensError(f"folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise BracketLensError(f"folder {parent} is not writable; choose another --out")


def export_pngs(figures: list[Figure], folder: Path) -> str:
    """Export every figure as PNG in one kaleido session; return a note if it cannot."""
    try:
        import kaleido  # noqa: F401
        import plotly.io as pio
    except ImportError:
        return "PNG figures were not written: install kaleido (pip install kaleido) and a Chromium."
    folder.mkdir()
    try:
        pio.write_images(
            [f.figure for f in figures],
            [folder / f"{f.name}.png" for f in figures],
            width=1100,
            scale=1,
        )
    except Exception as e:  # kaleido reports a missing browser in several ways
        shutil.rmtree(folder, ignore_errors=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"PNG figures were not written: static export failed on this machine ({first})."
    return ""


def write_report(findings: Findings, out: str | os.PathLike[str], *, png: bool = True) -> Path:
    """Write ``index.html``, ``findings.json`` and ``figures/*.png`` to ``out``."""
    out = Path(out)
    check_report_dir(out)
    figures = all_figures(findings)
    flat = [fig for section in figures.values() for fig in section]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    try:
        note = export_pngs(flat, tmp / "figures") if png else "PNG export was turned off."
        (tmp / "findings.json").write_text(json.dumps(findings.to_json(), indent=2))
        (tmp / "index.html").write_text(render_html(findings, figures, note), encoding="utf-8")
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``, replacing an earlier report there."""
    if not out.exists():
        os.replace(new, out)
        return
    old = new.with_name(new.name + ".old")
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)
