"""Figures of logit attribution: pure functions from results to plotly figures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Bool, Float, Int
from plotly.subplots import make_subplots
from torch import Tensor

from bracketlens.data.truth import FailureGroup
from bracketlens.plots._style import (
    BALANCED_COLOUR,
    GROUP_COLOURS,
    UNBALANCED_COLOUR,
    finish,
)


def component_histograms(
    values: Float[Tensor, "component batch"],
    labels: Sequence[str],
    balanced: Bool[Tensor, " batch"],
    *,
    title: str = "Component outputs in the unbalanced direction (centred on balanced strings)",
    cols: int = 5,
) -> go.Figure:
    """One histogram per component, balanced and unbalanced strings overlaid."""
    rows = math.ceil(len(labels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(labels))
    bal = balanced.numpy()
    for i in range(len(labels)):
        v = values[i].numpy()
        for mask, name, colour in (
            (bal, "balanced", BALANCED_COLOUR),
            (~bal, "unbalanced", UNBALANCED_COLOUR),
        ):
            fig.add_trace(
                go.Histogram(
                    x=v[mask],
                    name=name,
                    marker_color=colour,
                    opacity=0.6,
                    nbinsx=60,
                    legendgroup=name,
                    showlegend=i == 0,
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
    fig.update_layout(barmode="overlay")
    return finish(fig, title, height=260 * rows)


def group_scatter(
    x: Float[Tensor, " batch"],
    y: Float[Tensor, " batch"],
    groups: Int[Tensor, " batch"],
    *,
    x_label: str,
    y_label: str,
    title: str,
    hover: Sequence[str] | None = None,
) -> go.Figure:
    """Scatter of two per-string quantities, coloured by failure group."""
    fig = go.Figure()
    for g in FailureGroup:
        mask = (groups == g).numpy()
        if not mask.any():
            continue
        fig.add_trace(
            go.Scattergl(
                x=x.numpy()[mask],
                y=y.numpy()[mask],
                mode="markers",
                name=g.label,
                marker={"color": GROUP_COLOURS[g], "size": 4, "opacity": 0.6},
                text=None if hover is None else list(np.asarray(hover, dtype=object)[mask]),
                hovertemplate="%{text}<br>%{x:.3f}, %{y:.3f}" if hover is not None else None,
            )
        )
    fig.update_xaxes(title=x_label)
    fig.update_yaxes(title=y_label)
    return finish(fig, title)


def length_histogram(
    seq_length: Int[Tensor, " batch"], *, title: str = "String lengths"
) -> go.Figure:
    """How many strings of each length a data set holds."""
    lengths, counts = np.unique(seq_length.numpy(), return_counts=True)
    fig = go.Figure(go.Bar(x=lengths, y=counts, marker_color=BALANCED_COLOUR))
    fig.update_xaxes(title="number of parens", dtick=2)
    fig.update_yaxes(title="strings")
    return finish(fig, title, height=320)
