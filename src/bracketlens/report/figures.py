"""An analysis -> the report's figures, in the order of the analysis."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from bracketlens.analysis import Analysis
from bracketlens.data.tokens import MAX_PARENS
from bracketlens.plots.algorithms import iia_heatmaps, probe_heatmaps
from bracketlens.plots.attribution import component_histograms, group_scatter, length_histogram
from bracketlens.plots.circuits import attention_bars, group_bars, neuron_explorer, ranked_bars
from bracketlens.plots.discovery import DRAWN_EDGES, circuit_graph, faithfulness_curves


@dataclass(frozen=True)
class Figure:
    """A named figure with the sentence that says what to see in it."""

    name: str  # file stem for the PNG, and the HTML anchor
    caption: str
    figure: go.Figure


def attribution_figures(f: Analysis) -> list[Figure]:
    """Data set and logit attribution: lengths, histograms, the two final heads."""
    att, data = f.attribution, f.data
    elev = f"head {f.localisation.elevation_head.text}"
    neg = f"head {f.localisation.negative_head.text}"
    groups = data.failure_groups
    return [
        Figure(
            "lengths",
            "How many strings of each length the sample holds.",
            length_histogram(data.seq_length),
        ),
        Figure(
            "component_histograms",
            "Each component's output in the unbalanced direction at position 0, centred on "
            "balanced strings: the components whose unbalanced mass sits far from 0 decide.",
            component_histograms(att.values, att.labels, data.labels),
        ),
        Figure(
            "heads_scatter",
            f"{elev} against {neg}, one point per string: which head fires on which failure.",
            group_scatter(
                att[elev],
                att[neg],
                groups,
                x_label=elev,
                y_label=neg,
                title=f"{elev} vs {neg} (centred contributions)",
                hover=data.strings,
            ),
        ),
        Figure(
            "elevation_head_vs_open",
            f"{elev}'s contribution against the share of '(' in the string: it fires when "
            "the counts differ.",
            group_scatter(
                data.open_proportion,
                att[elev],
                groups,
                x_label="open proportion",
                y_label=elev,
                title=f"{elev} vs open proportion",
                hover=data.strings,
            ),
        ),
    ]


def circuit_figures(f: Analysis) -> list[Figure]:
    """The elevation circuit: attention, components before it, neurons."""
    e, r, data = f.elevation, f.roles, f.data
    if e is None or r is None:
        return []
    head = f"{r.elevation_layer}.{r.elevation_head}"
    comp = e.components
    opens = data[data.starts_open]
    figs = [
        Figure(
            "elevation_attention",
            f"Mean attention of head {head} from position 0 over strings starting with '(': "
            f"it reads position {r.read_position}.",
            attention_bars(
                e.attention_from_0,
                title=f"Head {head}: attention from query 0",
                highlight=r.read_position,
            ),
        ),
        Figure(
            "components_before",
            f"Components written before layer {r.elevation_layer}, at position "
            f"{r.read_position}, in head {head}'s input direction (centred on balanced strings).",
            component_histograms(
                comp.values,
                comp.labels,
                data.labels,
                title=f"Components in head {head}'s direction",
                cols=4,
            ),
        ),
    ]
    for layer, contrib in e.neuron_contributions.items():
        ranks = e.neuron_ranks[layer][:12]
        order = [int(x.name.split(".")[1]) for x in ranks]
        figs.append(
            Figure(
                f"neuron_ranking_{layer}",
                f"MLP {layer} neurons ranked by how far apart their unbalanced and balanced "
                "means are (strings starting with '(').",
                ranked_bars(
                    [x.name for x in ranks],
                    [x.separation for x in ranks],
                    title=f"MLP {layer}: neurons that separate",
                    y_label="separation",
                ),
            )
        )
        figs.append(
            Figure(
                f"neurons_{layer}",
                f"MLP {layer} neurons: contribution to head {head}'s direction against the "
                "open proportion (pick the neuron in the menu).",
                neuron_explorer(
                    contrib[:, order],
                    opens.open_proportion,
                    opens.failure_groups,
                    [x.name for x in ranks],
                    title=f"MLP {layer}",
                ),
            )
        )
    return figs


def patching_figures(f: Analysis) -> list[Figure]:
    """Bar charts of the tallying head's attention from the read position, per patch."""
    r = f.roles
    if r is None:
        return []
    labels = ["[start]", *[str(i + 1) for i in range(MAX_PARENS)], "[end]"]
    return [
        Figure(
            f"patching_{i}",
            p.description,
            attention_bars(
                p.pattern[r.tally_head, r.read_position],
                title=f"Head 0.{r.tally_head}, query {r.read_position}: {p.description}",
                key_labels=labels,
            ),
        )
        for i, p in enumerate(f.patching)
    ]


def negative_figures(f: Analysis) -> list[Figure]:
    """What feeds the negative head, per failure group."""
    feeders = f.negative_feeders
    if feeders is None:
        return []
    return [
        Figure(
            "negative_feeders",
            f"Median contribution of each earlier component, through head {feeders.head}'s "
            "attention from position 0, to its output in the unbalanced direction (centred on "
            "balanced strings), per failure group.",
            group_bars(
                feeders.group_medians(f.data.failure_groups),
                title=f"What feeds head {feeders.head}",
                y_label="median contribution",
            ),
        )
    ]


def algorithm_figures(f: Analysis) -> list[Figure]:
    """What each site decodes (the probe map), and where each variable aligns: IIA over
    (hook, position) per pair kind."""
    screens = () if f.explanation is None else f.explanation.screens
    caption = ("Whole-vector interchange at each hook and position, on validation pairs: "
               "bright cells carry the variable for that kind of pair.")  # fmt: skip
    probes = None if f.explanation is None else f.explanation.probes
    figs = [] if probes is None else [Figure(
        "probe_map",
        "Linear probes of each variable at each hook, fitted on 70% of the strings and "
        "scored on the rest: what is decodable where. Interchange interventions, below and "
        "in the verdict, say what the model uses.",
        probe_heatmaps(probes),
    )]  # fmt: skip
    return figs + [Figure(f"iia_{s.variable}", caption, iia_heatmaps(s)) for s in screens]


def discovery_figures(f: Analysis) -> list[Figure]:
    """The circuit found without a template as a graph, and its faithfulness curves."""
    found = f.discovery
    d = None if found is None else found.result
    if found is None or d is None or d.faithfulness_reason is not None:
        return []
    figs = [
        Figure(
            "discovery_faithfulness",
            f"Left: faithfulness of {d.method}'s top edges at each budget, over all pairs and "
            "per edit. Right: the best node-induced circuit of each size (exact, every subset) "
            f"beside {d.method}'s own top components; the dotted line is f = 0.95.",
            faithfulness_curves(d, d.optimum, title="Faithfulness against circuit size"),
        )
    ]
    if d.circuit is not None:
        figs.insert(0, Figure(
            "discovery_circuit",
            f"The circuit {d.method} finds, {d.circuit.n_edges:,} edges, its "
            f"{min(DRAWN_EDGES, d.circuit.n_edges)} strongest drawn: each from a sender to "
            "a receiver's input at one position (q, k, v: a head's query, key, value input); "
            "width by |score|, blue raises the logit difference towards the right label, red "
            "lowers it. Mixing across positions happens inside a head's attention.",
            circuit_graph(d.circuit, list(found.components), title="The circuit, found without a template"),
        ))  # fmt: skip
    return figs


def all_figures(f: Analysis) -> dict[str, list[Figure]]:
    """Every figure, grouped by report section."""
    return {
        "algorithm": algorithm_figures(f),
        "attribution": attribution_figures(f),
        "circuit": circuit_figures(f),
        "discovery": discovery_figures(f),
        "negative": negative_figures(f),
        "patching": patching_figures(f),
    }
