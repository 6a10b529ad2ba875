"""Figures of the elevation circuit: pure functions from results to plotly figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.data.truth import FailureGroup
from bracketlens.plots._style import BALANCED_COLOUR, GROUP_COLOURS, UNBALANCED_COLOUR, finish


def attention_bars(
    row: Float[Tensor, " seqK"],
    *,
    title: str,
    highlight: int | None = None,
    key_labels: Sequence[str] | None = None,
) -> go.Figure:
    """Mean attention of one query row over the keys, one bar per key."""
    labels = list(key_labels) if key_labels is not None else [str(k) for k in range(len(row))]
    colours = [UNBALANCED_COLOUR if k == highlight else BALANCED_COLOUR for k in range(len(row))]
    fig = go.Figure(go.Bar(x=labels, y=row.numpy(), marker_color=colours))
    fig.update_xaxes(title="key position", type="category")
    fig.update_yaxes(title="attention probability", range=[0, max(1.0, float(row.max()))])
    return finish(fig, title, height=340)


def neuron_explorer(
    contributions: Float[Tensor, "batch neuron"],
    open_proportion: Float[Tensor, " batch"],
    groups: Int[Tensor, " batch"],
    names: Sequence[str],
    *,
    title: str,
    max_points: int = 1500,
) -> go.Figure:
    """Each neuron's contribution vs the open proportion, a dropdown to pick the neuron.

    One trace per (neuron, failure group); the dropdown toggles which neuron's traces
    are visible. At most ``max_points`` strings are drawn (a fixed subsample) to keep
    the page light.
    """
    keep = np.linspace(0, len(open_proportion) - 1, min(max_points, len(open_proportion)))
    idx = np.unique(keep.astype(int))
    p, g = open_proportion.numpy()[idx], groups.numpy()[idx]
    present = [grp for grp in FailureGroup if (g == grp).any()]
    fig = go.Figure()
    for n in range(len(names)):
        values = contributions[idx, n].numpy()
        for grp in present:
            mask = g == grp
            fig.add_trace(
                go.Scattergl(
                    x=p[mask], y=values[mask], mode="markers", name=grp.label,
                    marker={"color": GROUP_COLOURS[grp], "size": 4, "opacity": 0.6},
                    visible=n == 0, legendgroup=grp.label, showlegend=True,
                )
            )  # fmt: skip
    per = len(present)
    buttons = [
        {
            "label": name,
            "method": "update",
            "args": [
                {"visible": [k // per == n for k in range(per * len(names))]},
                {"title.text": f"{title}: neuron {name}"},
            ],
        }
        for n, name in enumerate(names)
    ]
    fig.update_layout(updatemenus=[{"buttons": buttons, "x": 1.0, "y": 1.18, "xanchor": "right"}])
    fig.update_xaxes(title="open proportion")
    fig.update_yaxes(title="contribution in the head's input direction")
    return finish(fig, f"{title}: neuron {names[0]}" if names else title, height=460)


def ranked_bars(
    names: Sequence[str], values: Sequence[float], *, title: str, y_label: str
) -> go.Figure:
    """A bar per item in the given order (e.g. neurons ranked by separation)."""
    colours = [UNBALANCED_COLOUR if v > 0 else BALANCED_COLOUR for v in values]
    fig = go.Figure(go.Bar(x=list(names), y=list(values), marker_color=colours))
    fig.update_xaxes(type="category")
    fig.update_yaxes(title=y_label)
    return finish(fig, title, height=340)


def cosine_bars(cosines: Float[Tensor, " d_mlp"], *, title: str, random_level: float) -> go.Figure:
    """Cosine of a vector with each MLP input direction, with the random-vector RMS level."""
    fig = go.Figure(
        go.Bar(
            x=[str(i) for i in range(len(cosines))], y=cosines.numpy(), marker_color=BALANCED_COLOUR
        )
    )
    rms = float(np.sqrt(random_level))
    for level in (rms, -rms):
        fig.add_hline(y=level, line_dash="dot", line_color="grey")
    fig.update_xaxes(title="neuron", type="category")
    fig.update_yaxes(title="cosine similarity", range=[-1, 1])
    return finish(fig, title, height=340)


def group_bars(medians: dict[str, dict[str, float]], *, title: str, y_label: str) -> go.Figure:
    """One bar per (item, failure group): e.g. each component's median contribution."""
    items = list(medians)
    fig = go.Figure()
    for grp in FailureGroup:
        if not any(grp.label in medians[item] for item in items):
            continue
        fig.add_trace(
            go.Bar(
                name=grp.label,
                x=items,
                y=[medians[item].get(grp.label, float("nan")) for item in items],
                marker_color=GROUP_COLOURS[grp],
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.update_yaxes(title=y_label)
    return finish(fig, title, height=380)
