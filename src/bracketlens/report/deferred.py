"""The report's figures as inlined data drawn on demand, and its libraries packed small.

Each plotly figure becomes an empty placeholder of the figure's size followed by
its JSON (``plotly.io.to_json``: numpy arrays travel as plotly's own base64
typed arrays); ``static/figures.js`` draws it with ``Plotly.newPlot`` from the
same data, layout and config once it nears the viewport, and draws every figure
before the page is printed. plotly.js and the circuitsvis bundle are inlined
gzipped, in base64 (about a third of their size), and unpacked in the page with
the browser's ``DecompressionStream``. Nothing is fetched: the page works offline
from any folder.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from functools import cache
from importlib.resources import files
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from bracketlens.report.figures import Figure

#: What ``Plotly.newPlot`` is given for every figure (plotly's HTML export adds ``responsive``).
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
PLOTLY_ID = "plotly-js"
CIRCUITSVIS_ID = "circuitsvis-js"


def _script_safe(text: str) -> str:
    # "</" inside a script element would end it early; "<\/" is the same JSON string
    return text.replace("</", "<\\/")


def _css_size(value: object) -> str:
    """A layout width or height as plotly's HTML export sizes the figure's div."""
    return f"{value}px" if isinstance(value, (int, float)) else "100%"


def figure_html(fig: Figure) -> str:
    """A figure's placeholder, its JSON and its caption."""
    layout = fig.figure.layout
    style = f"height:{_css_size(layout.height)}; width:{_css_size(layout.width)};"
    spec = _script_safe(pio.to_json(fig.figure, validate=False))
    config = html.escape(json.dumps(PLOTLY_CONFIG), quote=True)
    div_id = f"fig-{fig.name}"
    return (
        f'<div class="figure" id="{fig.name}">'
        f'<div id="{div_id}" class="plotly-graph-div" style="{style}" data-lazy-figure="plotly" '
        f'data-config="{config}"></div>'
        f'<script type="application/json" data-figure-of="{div_id}">{spec}</script>'
        f'<p class="caption">{html.escape(fig.caption)}</p></div>'
    )


def circuitsvis_html(element_id: str, props: str, caption: str) -> str:
    """A circuitsvis attention view's placeholder, its props (JSON text) and its caption."""
    return (
        f'<div class="figure" id="circuitsvis"><div id="{element_id}" data-lazy-figure="circuitsvis">'
        f'</div><script type="application/json" data-figure-of="{element_id}">'
        f'{_script_safe(props)}</script><p class="caption">{html.escape(caption)}</p></div>'
    )


def _packed(source: str) -> str:
    """``source`` gzipped (no timestamp, so the page is reproducible), in base64."""
    return base64.b64encode(gzip.compress(source.encode("utf-8"), 9, mtime=0)).decode("ascii")


@cache
def _plotly_packed() -> str:
    return _packed(get_plotlyjs())


@cache
def _circuitsvis_packed() -> str:
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return _packed(path.read_text(encoding="utf-8"))


def libraries_html(*, circuitsvis: bool) -> str:
    """The packed libraries, then the script that unpacks them and draws the figures."""
    packed = [(PLOTLY_ID, _plotly_packed())]
    if circuitsvis:
        packed.append((CIRCUITSVIS_ID, _circuitsvis_packed()))
    loader = (files("bracketlens.report") / "static" / "figures.js").read_text(encoding="utf-8")
    return (
        "".join(
            f'<script type="text/plain" id="{name}" data-encoding="gzip+base64">{data}</script>'
            for name, data in packed
        )
        + f"<script>{_script_safe(loader)}</script>"
    )
