"""Figures of a discovered circuit: the circuit as a graph, and faithfulness curves."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bracketlens.discovery.pairs import EDITS
from bracketlens.discovery.result import Circuit, Discovery, Optimum
from bracketlens.plots._style import BALANCED_COLOUR, UNBALANCED_COLOUR, finish

# a receiver input sits a little beside its component's column, so q, k and v edges part
_INPUT_SHIFT = {"q": -0.22, "k": 0.0, "v": 0.22, "mlp": 0.0, "logits": 0.0}
DRAWN_EDGES = 80  # the strongest edges drawn: a page of thousands of lines shows nothing
_EDIT_DASH = {"open_to_close": "dot", "close_to_open": "dash", "swap_block": "dashdot"}


def _columns(names: list[str]) -> dict[str, int]:
    """Each component's column: the embeddings, then each layer's heads and MLP, then the
    logits (the order of the forward pass)."""
    return {name: i for i, name in enumerate(names)}


def _arc(x0: float, x1: float, y: float, bend: float) -> tuple[list[float], list[float]]:
    """Points of an arc from ``(x0, y)`` to ``(x1, y)`` that rises by ``bend`` in the middle:
    same-position edges would otherwise lie on one line."""
    xs = [x0 + (x1 - x0) * t / 12 for t in range(13)]
    ys = [y + bend * 4 * (t / 12) * (1 - t / 12) for t in range(13)]
    return xs, ys


def circuit_graph(circuit: Circuit, components: list[str], *, title: str) -> go.Figure:
    """The circuit's strongest :data:`DRAWN_EDGES` edges from sender to receiver input, one
    row per position and one column per component in forward order; width by |score|,
    colour by sign (blue: the edge raises m, the signed logit difference; red: it lowers it)."""
    cols = _columns(components)
    top = max((abs(e.score) for e in circuit.edges), default=1.0) or 1.0
    fig = go.Figure()
    nodes: dict[tuple[str, int], None] = {}
    for e in sorted(circuit.edges, key=lambda e: abs(e.score))[-DRAWN_EDGES:]:
        y = 0 if e.position is None else e.position
        x0, x1 = cols[e.sender], cols[e.receiver] + _INPUT_SHIFT[e.input]
        xs, ys = _arc(x0, x1, y, 0.06 * (x1 - x0))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={
                    "width": 0.5 + 6 * abs(e.score) / top,
                    "color": BALANCED_COLOUR if e.score >= 0 else UNBALANCED_COLOUR,
                },
                hovertext=f"{e.sender} -> {e.receiver} ({e.input}) at {y}: {e.score:+.3f}",
                hoverinfo="text",
                showlegend=False,
            )
        )
        nodes |= {(e.sender, y): None, (e.receiver, y): None}
    fig.add_trace(
        go.Scatter(
            x=[cols[n] for n, _ in nodes],
            y=[p for _, p in nodes],
            mode="markers",
            marker={"size": 9, "color": "#1d2433"},
            hovertext=[f"{n} at position {p}" for n, p in nodes],
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_xaxes(
        tickvals=list(cols.values()), ticktext=list(cols), title="component (forward order)"
    )
    fig.update_yaxes(title="position", autorange="reversed", dtick=1)
    return finish(fig, title, height=480)


def faithfulness_curves(d: Discovery, optimum: Optimum | None, *, title: str) -> go.Figure:
    """Left: f of the method's top edges at each budget, overall and per edit. Right: the
    node optimum's best f at each number of components, beside the method's own top
    components by the summed |score| of their edges."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"{d.method}, {d.level} level: top edges", "node-induced circuits"),
    )
    x = [100 * b.fraction for b in d.budgets]
    f = [b.faithfulness for b in d.budgets]
    fig.add_trace(go.Scatter(x=x, y=f, mode="lines+markers", name="all pairs"), row=1, col=1)
    for edit in EDITS:
        if edit in d.by_edit:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=d.by_edit[edit],
                    mode="lines",
                    name=edit,
                    line={"dash": _EDIT_DASH[edit]},
                ),
                row=1,
                col=1,
            )
    if optimum is not None:
        sizes = [r.size for r in optimum.by_size]
        fig.add_trace(
            go.Scatter(
                x=sizes,
                y=[r.faithfulness for r in optimum.by_size],
                mode="lines+markers",
                name="node optimum",
                hovertext=[", ".join(r.components) for r in optimum.by_size],
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=sizes,
                y=[r.method_faithfulness for r in optimum.by_size],
                mode="lines+markers",
                name=f"{d.method}'s top components",
                hovertext=[", ".join(r.method_components) for r in optimum.by_size],
            ),
            row=1,
            col=2,
        )
    scale = "log" if d.level == "position" else "linear"  # component level starts at 0
    fig.update_xaxes(title="% of edges kept", type=scale, row=1, col=1)
    fig.update_xaxes(title="components kept", dtick=1, row=1, col=2)
    fig.update_yaxes(title="faithfulness f", row=1, col=1)
    for col in (1, 2):
        fig.add_hline(y=0.95, line={"dash": "dot", "color": "#8a8a8a"}, row=1, col=col)
    return finish(fig, title, height=420)
