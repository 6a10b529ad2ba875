"""Shared look of every figure: colours per failure group, layout defaults."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

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
    _template(fig)
    fig.update_layout(
        title={"text": title, "x": 0.02, "xanchor": "left"},
        height=height,
        width=width,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"itemsizing": "constant"},
    )
    return fig


def _template(fig: go.Figure) -> None:
    """Give ``fig`` the registered :data:`TEMPLATE` as plotly gives a new figure its default
    template: without validating it again.

    ``update_layout(template=name)`` deep-copies and validates the whole template each
    time, about 20 ms a figure (the report draws 20 to 40); the registered template is
    valid already. The figure's JSON is the same. Where plotly's layout object lacks the
    switch (another plotly version), the template is set the validated way.
    """
    layout = fig.layout
    if not hasattr(layout, "_validate"):
        fig.update_layout(template=TEMPLATE)
        return
    layout._validate = False
    try:
        layout.template = pio.templates[TEMPLATE]
    finally:
        layout._validate = True
