"""A sweep's summary -> one self-contained HTML page (plotly inlined), written atomically."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from bracketlens.atomic import atomic_write_text
from bracketlens.errors import BracketLensError
from bracketlens.plots.universality import role_locations

PAGE = "index.html"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px 40px;
       color: #1d2433; line-height: 1.5; }
table { border-collapse: collapse; font-size: 14px; margin: 10px 0; }
td, th { border-bottom: 1px solid #e3e8ee; padding: 4px 10px; text-align: left; }
th { background: #f3f5f8; }
.note { color: #8a5a00; background: #fff6e0; padding: 8px 12px; border-radius: 6px; }
"""


def check_page_dir(out: Path) -> None:
    """Refuse a ``--report`` target that is a file or a folder of other things."""
    if out.exists() and (not out.is_dir() or any(p.name != PAGE for p in out.iterdir())):
        raise BracketLensError(f"{out} exists and is not a sweep report folder; choose another")
    if not out.resolve().parent.is_dir():
        raise BracketLensError(f"folder {out.resolve().parent} does not exist; create it first")


def write_page(result: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write ``index.html`` into ``out`` from ``bracketlens seeds --json``'s object."""
    out = Path(out)
    check_page_dir(out)
    out.mkdir(exist_ok=True)
    path = out / PAGE
    atomic_write_text(path, render_page(result))
    return path


def render_page(result: Mapping[str, Any]) -> str:
    """The page as one string: verdicts, roles with intervals, the figure, every seed."""
    summary, rows = result["summary"], result["rows"]
    fig = role_locations(summary["roles"], summary["n_analysed"])
    figure = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id="role-locations",
        config={"displaylogo": False},
    )  # fmt: skip
    data = json.dumps(result).replace("</", "<\\/")  # "</" would end the script element
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bracketlens seeds</title>
<style>{_CSS}</style><script type="text/javascript">{get_plotlyjs()}</script></head><body>
<h1>Universality across {summary["n_seeds"]} seeds</h1>
{_overview(summary, rows)}
<h2>Which algorithm each model runs</h2>{_verdicts(summary)}
<h2>Where each role lands</h2>{figure}{_roles(summary["roles"])}
<h2>Layouts</h2>{_table(["layout", "seeds", "fraction (95% Wilson)"], [[e["layout"], e["count"], _frac(e)] for e in summary["layouts"]])}
<h2>Every seed</h2>{_seed_table(rows)}
<script type="application/json" id="sweep">{data}</script>
</body></html>"""


def _overview(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    recipes = sorted({f"{r['recipe']} ({r['steps']} steps, hash {r['recipe_hash']})" for r in rows})
    course = summary["course_layout"]
    return (
        f"<p>Recipe: {html.escape(', '.join(recipes))}. {summary['n_analysed']} seeds analysed, "
        f"{summary['n_failed']} failed. The course's layout ({html.escape(course['layout'])}) "
        f"appears in {course['count']} of them: {_frac(course)}.</p>"
    )


def _verdicts(summary: Mapping[str, Any]) -> str:
    rows = [
        [e["verdict"], e["count"], _frac(e), _where(e["variables"])] for e in summary["verdicts"]
    ]
    note = (
        f"<p>Unexplained (no high-level model reaches explain's bar): {summary['unexplained']}.</p>"
    )
    return (
        _table(["verdict", "seeds", "fraction (95% Wilson)", "where its variables live"], rows)
        + note
    )


def _where(variables: Mapping[str, Mapping[str, int]]) -> str:
    return "; ".join(
        f"{name}: " + ", ".join(f"{loc} ({n})" for loc, n in places.items())
        for name, places in variables.items()
    )


def _roles(roles: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    rows = [
        [name.replace("_", " "), e["location"], e["count"], _frac(e)]
        for name, entries in roles.items()
        for e in entries
    ]
    return _table(["role", "location", "seeds", "fraction (95% Wilson)"], rows)


def _seed_table(rows: Sequence[Mapping[str, Any]]) -> str:
    cells = []
    for r in rows:
        roles = r.get("roles") or {}
        where = ", ".join(
            f"{k.split('_')[0]} {v['location'] or 'not found'}" for k, v in roles.items()
        )
        accuracy = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        cells.append([r["seed"], accuracy, where, r["verdict"], r["iia"], r["error"]])
    return _table(["seed", "accuracy", "roles", "verdict", "IIA", "error"], cells)


def _frac(entry: Mapping[str, Any]) -> str:
    if entry["fraction"] is None:  # no seed finished
        return "n/a"
    return f"{entry['fraction']:.0%} [{entry['ci_low']:.0%}, {entry['ci_high']:.0%}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
