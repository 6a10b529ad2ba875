"""Shared look of every figure: colours per failure group, layout defaults."""

from __future__ import annotations

import plotly.graph_objects as go

from bracketlens.data.truth import FailureGroup

GROUP_COLOURS = {
    FailureGroup.BOTH: "#7f3c8d",
    FailureGroup.NEGATIVE_ONLY: "#e68310",
    FailureGroup.ELEVATION_ONLY: "#11a579",
    FailureGroup.BALANCED: "#3969ac",
}
BALANCED_COLOUR = GROUP_COLOURS[FailureGroup.BALANCED]
UNBALANCED_COLOUR = "#e73f74"
TEMPLATE = "simple_white"


def finish(fig: go.Figure, title: str, *, height: int = 420, width: int | None = None) -> go.Figure:
    """Apply the common layout (template, title, margins, legend) and return the figure."""
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.02, "xanchor": "left"},
        height=height,
        width=width,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"itemsizing": "constant"},
    )
    return fig
