"""Figures of a seed sweep: pure functions from its summary to plotly figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from bracketlens.plots._style import finish


def role_locations(roles: Mapping[str, Sequence[Mapping[str, Any]]], n_seeds: int) -> go.Figure:
    """Where each role lands across seeds: one row per role, one column per location.

    Args:
        roles: the summary's ``roles``: per role, ``{"location", "count", ...}`` entries.
        n_seeds: the seeds the counts are out of (the colour scale's top).
    """
    names = list(roles)
    locations = sorted(
        {str(e["location"]) for entries in roles.values() for e in entries}, key=_location_order
    )
    counts = {(name, str(e["location"])): int(e["count"]) for name in names for e in roles[name]}
    z = [[counts.get((name, loc)) for loc in locations] for name in names]
    text = [["" if c is None else str(c) for c in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=locations,
            y=[n.replace("_", " ") for n in names],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=max(n_seeds, 1),
            colorbar={"title": "seeds"},
            hovertemplate="%{y} at %{x}: %{z} seeds<extra></extra>",
        )
    )
    fig.update_xaxes(title="location (head L.H, position, or component)", type="category")
    fig.update_yaxes(autorange="reversed")
    return finish(fig, f"Where each role lands, across {n_seeds} seeds", height=360)


def _location_order(location: str) -> tuple[int, float, str]:
    """Heads ("L.H") first, then positions, then components, then "not found"."""
    if location == "not found":
        return (3, 0.0, location)
    try:
        return (0 if "." in location else 1, float(location), location)
    except ValueError:
        return (2, 0.0, location)
