"""The explorer as HTML: a section for the report, or a page of its own.

The JavaScript module is inlined in one ``<script type="module">`` with the
payload, so the page needs no server and makes no network request. The payload
sits in a ``<script type="application/json">`` element that the module reads.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files

from bracketlens.explorer.export import ExplorerExport

#: The module's source, shipped as package data (no build step).
MODULE_PATH = "static/explorer.js"


def module_source() -> str:
    """The explorer's ES module, as text."""
    return (files("bracketlens.explorer") / MODULE_PATH).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    # "</" inside a script element would end it early
    return text.replace("</", "<\\/")


def explorer_section(export: ExplorerExport) -> str:
    """The explorer's markup and its script: goes inside the report's Explore section."""
    payload = _script_safe(json.dumps(export.to_json(), separators=(",", ":")))
    module = _script_safe(module_source())  # its exports are harmless in an inline module
    intro = (
        "<p>Type a string of parens: the model runs in this page (a float64 copy of its "
        "weights), and every view below is redrawn on each edit. Ablate a component, or "
        "patch it from a second string; the URL keeps the strings and the interventions, "
        "so a link reproduces the view.</p>"
    )
    return (
        f'{intro}<div id="explorer"></div>'
        f'<script type="application/json" id="explorer-payload">{payload}</script>'
        f'<script type="module">{module}\n'
        'boot(document.getElementById("explorer"), '
        'JSON.parse(document.getElementById("explorer-payload").textContent));</script>'
    )


def explorer_page(export: ExplorerExport, title: str = "bracketlens explorer") -> str:
    """A page with the explorer only (for tests and benchmarks; loads faster than a report)."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f'<section id="explore"><h2>Explore</h2>{explorer_section(export)}</section>'
        "</body></html>"
    )
