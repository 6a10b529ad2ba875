"""Figures of algorithm discovery: where each variable aligns, per pair kind (pure: result -> figure)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bracketlens.algorithms.pairs import KINDS
from bracketlens.algorithms.result import ScreenMap
from bracketlens.plots._style import finish


def iia_heatmaps(screen: ScreenMap) -> go.Figure:
    """IIA of whole-vector patches over (hook, position), one panel per pair kind.

    Rows are the screened hooks in forward order (so layers read top to bottom);
    columns are single positions. Grey cells were not screened or have no pairs.
    """
    single = [j for j, p in enumerate(screen.positions) if len(p) == 1]
    positions = [screen.positions[j][0] for j in single]
    kinds = [k for k in range(len(KINDS)) if not np.isnan(screen.iia[:, single, k]).all()]
    fig = make_subplots(
        rows=1,
        cols=max(len(kinds), 1),
        shared_yaxes=True,
        subplot_titles=[KINDS[k].replace("_", " ") for k in kinds],
        horizontal_spacing=0.03,
    )
    for col, k in enumerate(kinds, start=1):
        z = screen.iia[:, single, k]
        fig.add_trace(
            go.Heatmap(
                z=[[None if np.isnan(x) else float(x) for x in row] for row in z],
                x=positions,
                y=list(screen.sites),
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == len(kinds),
                colorbar={"title": "IIA"},
                hovertemplate="%{y} @ %{x}: IIA %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="position", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    title = f"{screen.variable} ({screen.model}): IIA of whole-vector patches by hook and position"
    return finish(fig, title, height=120 + 22 * len(screen.sites))
