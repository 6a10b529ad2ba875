"""Figures drawn on demand: the same arguments to Plotly.newPlot as plotly's own HTML export."""

from __future__ import annotations

import base64
import gzip
import html
import json
import re

import numpy as np
import plotly.io as pio
import torch
from plotly.offline import get_plotlyjs

from bracketlens.plots.attribution import group_scatter, length_histogram
from bracketlens.report.deferred import PLOTLY_CONFIG, PLOTLY_ID, figure_html, libraries_html
from bracketlens.report.figures import Figure


def _newplot_args(exported: str) -> list[object]:
    """The data, layout and config that plotly's HTML export passes to ``Plotly.newPlot``."""
    decoder = json.JSONDecoder()
    rest = exported.split("Plotly.newPlot(", 1)[1]
    rest = rest.split(",", 1)[1]  # past the div id
    args = []
    for _ in range(3):
        value, end = decoder.raw_decode(rest.lstrip())
        args.append(value)
        rest = rest.lstrip()[end:].lstrip().removeprefix(",")
    return args


def _placeholder(page: str, div_id: str) -> tuple[dict[str, object], dict[str, object], str]:
    """Our figure's JSON, its config and its div's style."""
    spec = page.split(f'data-figure-of="{div_id}">', 1)[1].split("</script>", 1)[0]
    config = re.search(r'data-config="([^"]*)"', page)
    style = re.search(rf'id="{div_id}" class="plotly-graph-div" style="([^"]*)"', page)
    assert config is not None and style is not None
    return json.loads(spec.replace("<\\/", "</")), json.loads(html.unescape(config[1])), style[1]


def _figures() -> list[Figure]:
    gen = torch.Generator().manual_seed(0)
    n = 5000
    x, y = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    groups = torch.randint(0, 4, (n,), generator=gen)
    hover = ["(" * int(k % 7) + "</b>" for k in range(n)]  # "</" must not end the script
    scatter = group_scatter(x, y, groups, x_label="a", y_label="b", title="t", hover=hover)
    lengths = length_histogram(torch.randint(0, 41, (n,), generator=gen))
    return [Figure("scatter", "a scatter", scatter), Figure("lengths", "lengths", lengths)]


def test_placeholder_draws_what_plotly_export_draws():
    for fig in _figures():
        div_id = f"fig-{fig.name}"
        exported = pio.to_html(
            fig.figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG
        )
        data, layout, config = _newplot_args(exported)
        ours = figure_html(fig)
        spec, our_config, style = _placeholder(ours, div_id)
        assert spec["data"] == data
        assert spec["layout"] == layout
        assert our_config == config
        assert f'style="{style}"' in exported  # the same size before and after drawing


def test_thousands_of_points_travel_as_typed_arrays():
    scatter = _figures()[0]
    spec, _, _ = _placeholder(figure_html(scatter), "fig-scatter")
    traces = spec["data"]
    assert isinstance(traces, list) and len(traces) == 4
    for trace in traces:
        assert set(trace["x"]) == {"dtype", "bdata"} and trace["x"]["dtype"] == "f4"
        decoded = np.frombuffer(base64.b64decode(trace["x"]["bdata"]), dtype="<f4")
        assert len(decoded) > 1000
    total = sum(len(np.frombuffer(base64.b64decode(t["x"]["bdata"]), "<f4")) for t in traces)
    assert total == 5000


def test_packed_plotly_is_plotly_and_reproducible():
    page = libraries_html(circuitsvis=False)
    packed = page.split(f'id="{PLOTLY_ID}" data-encoding="gzip+base64">', 1)[1].split("<", 1)[0]
    assert gzip.decompress(base64.b64decode(packed)).decode("utf-8") == get_plotlyjs()
    assert len(packed) < 0.45 * len(get_plotlyjs())
    assert libraries_html(circuitsvis=False) == page
    packs = 'id="circuitsvis-js" data-encoding'
    assert packs not in page and packs in libraries_html(circuitsvis=True)
