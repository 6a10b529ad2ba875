"""Figures of algorithm discovery: where each variable aligns, per pair kind (pure: result -> figure)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bracketlens.algorithms.pairs import KINDS
from bracketlens.algorithms.probes import BALANCED_ACCURACY, R2, ProbeMap
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


def probe_heatmaps(probes: ProbeMap) -> go.Figure:
    """The probe map: how well a linear probe reads each variable at each hook.

    Two rows of panels, integers (R²) above booleans (balanced accuracy); three columns:
    position 0 (``[start]``, where the class is read), position 1 (the first paren),
    and the best other position (named on hover). Hooks run left to right in forward
    order; grey cells have too few strings to score.
    """
    single = probes.scores[:, :, :2]
    best, where = probes.by_site(first=2)
    panels = [(single[..., 0], None), (single[..., 1], None), (best, where)]
    rows = [(R2, "R²"), (BALANCED_ACCURACY, "balanced accuracy")]
    fig = make_subplots(
        rows=2,
        cols=3,
        shared_xaxes=True,
        shared_yaxes="rows",
        row_heights=[sum(k == kind for k in probes.kinds) for kind, _ in rows],
        subplot_titles=["at position 0", "at position 1", "at the best other position"],
        vertical_spacing=0.04,
        horizontal_spacing=0.02,
    )
    for r, (kind, label) in enumerate(rows, start=1):
        chosen = [i for i, k in enumerate(probes.kinds) if k == kind]
        names = [probes.variables[i] for i in chosen]
        for c, (grid, positions) in enumerate(panels, start=1):
            z = grid[chosen]
            at = np.full(z.shape, -1) if positions is None else positions[chosen]
            text = np.where(at >= 0, np.char.add("@", at.astype(str)), "")
            fig.add_trace(
                go.Heatmap(
                    z=[[None if np.isnan(x) else round(float(x), 3) for x in row] for row in z],
                    x=list(probes.sites),
                    y=names,
                    text=text.tolist(),
                    zmin=0.5 if kind == BALANCED_ACCURACY else 0,
                    zmax=1,
                    colorscale="Viridis",
                    showscale=c == 3,
                    colorbar={"title": label, "len": 0.45, "y": 0.78 if r == 1 else 0.22},
                    hovertemplate=f"%{{y}} at %{{x}} %{{text}}: {label} %{{z:.2f}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-60, row=2)
    title = f"What a linear probe reads where ({probes.n_strings} strings, 30% held out)"
    return finish(fig, title, height=220 + 24 * len(probes.variables))
