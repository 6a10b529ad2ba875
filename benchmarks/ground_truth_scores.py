"""Every detector on one model whose circuit is known: the rows of ``ground_truth.py``.

- ``eap``, ``eap-ig``: ``discover``'s scores at its default level (position) and
  ablation (counterfactual), on the half of the pairs it chooses circuits on;
  circuits are the top edges at MIB's budgets.
- ``exact``: single-edge patching at component level (at position level it patches
  every live edge alone: thousands of runs), at 17 edge counts from 0 to all 100.
- ``acdc``: :mod:`bracketlens.discovery.acdc` at component level, KL, on 100 of the
  chosen pairs; its circuits are the sweep's.
- ``circuit``: the course's roles as one circuit (tally head, MLP 0, the two readers).

For each: edge and node AUROC from the raw scores and traced from the budgets (MIB),
and CMD (the area under |1 - f| over the fraction of edges). Beside them the node
optimum (the smallest node-induced circuit with f >= 0.95, on 600 strings' pairs)
against the true nodes, and ``explain`` with its default search (alone with
``--explain-only``: :func:`explain_row`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bracketlens import evaluation_set, load_model
from bracketlens.algorithms import explain
from bracketlens.algorithms.causal import MODELS, CausalModel
from bracketlens.algorithms.equivalence import same_variable
from bracketlens.algorithms.generate import atom_model, default_models
from bracketlens.algorithms.grammar import CANDIDATE_ATOMS
from bracketlens.data.tokens import PAD
from bracketlens.discovery.acdc import acdc
from bracketlens.discovery.graph import Graph
from bracketlens.discovery.optimum import node_circuits_m
from bracketlens.discovery.pairs import halves, make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.discovery.scores import edge_scores
from bracketlens.model.transformer import BracketTransformer
from bracketlens.pipeline import run
from bracketlens.plan import COMMAND_STAGES
from bracketlens.planted.circuits import (
    EDGE_RULE,
    RULE_ATOMS,
    CircuitSpec,
    strict_edges,
    strict_nodes,
    true_components,
    true_edges,
)
from bracketlens.planted.score import (
    auroc,
    component_truth,
    components_of,
    node_scores,
    traced_auroc,
)

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # discover's, MIB's
COMPONENT_BUDGETS = (0, 1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75)  # edge counts
ACDC_PAIRS = 100
OPTIMUM_STRINGS = 600  # the node optimum runs every subset of components: on fewer pairs
DETECTORS = ("eap", "eap-ig", "exact", "acdc", "circuit")


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _cmd(fractions: list[float], f: list[float]) -> float:
    """The area under |1 - f| over the fraction of edges, divided by the fractions' span."""
    pts = sorted(zip(fractions, f, strict=True))
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return abs(1 - pts[0][1])
    xs = torch.tensor([p[0] for p in pts])
    ys = torch.tensor([abs(1 - p[1]) for p in pts])
    return float(torch.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def _ranked(
    runs: Runs, scores: Tensor, edges: Tensor, truth: Tensor, nodes: Tensor, level: str
) -> dict[str, Any]:
    """AUROCs and CMD of a method that ranks ``edges`` by ``scores`` ([r, s, pos])."""
    graph, where = runs.graph, edges.nonzero()
    flat, t = scores[edges].abs(), truth[edges]
    order = torch.argsort(flat, descending=True, stable=True)
    n = len(flat)
    counts = (
        [*COMPONENT_BUDGETS, n]
        if level == "component"
        else [max(1, round(f * n)) for f in FRACTIONS]
    )
    cut = torch.ones(len(counts), *edges.shape)
    kept_flat, kept_nodes = [], []
    for i, k in enumerate(counts):
        top = where[order[:k]]
        cut[i, top[:, 0], top[:, 1], top[:, 2]] = 0.0
        mask = torch.zeros(n, dtype=torch.bool)
        mask[order[:k]] = True
        kept_flat.append(mask)
        kept_nodes.append(components_of(graph, (cut[i] == 0).any(-1) & graph.upstream))
    f = torch.cat([runs.faithfulness(runs.m(cut[i : i + 8]))[0] for i in range(0, len(counts), 8)])
    return {
        "level": level,
        "edge_auroc": _r(auroc(flat, t)),
        "node_auroc": _r(auroc(node_scores(graph, scores.abs().sum(-1)), nodes)),
        "edge_auroc_traced": _r(traced_auroc(kept_flat, t)),
        "node_auroc_traced": _r(traced_auroc(kept_nodes, nodes)),
        "cmd": _r(_cmd([k / n for k in counts], f.tolist())),
    }


def _against(scores: Tensor, truth: Tensor, strict: Tensor) -> float | None:
    """Edge AUROC of the true edges against the strict ones alone (the edges out of a
    node SIIT trains to do nothing, or into a component outside the circuit)."""
    both = truth | strict
    return auroc(scores[both].abs(), truth[both])


def _acdc(runs: Runs, chosen: Tensor, truth: Tensor, nodes: Tensor) -> dict[str, Any]:
    rows = chosen.clone()
    picked = chosen.nonzero()[:, 0]
    half = len(rows) // 2
    keep = picked[picked < half][:ACDC_PAIRS]
    rows[:] = False
    rows[keep], rows[keep + half] = True, True  # both orders of each pair
    found = acdc(runs, rows)
    graph = runs.graph
    up = graph.upstream
    flat_truth = truth[up]
    return {
        "level": "component",
        "edge_auroc": _r(auroc(found.scores[up], flat_truth)),
        "node_auroc": _r(auroc(node_scores(graph, found.scores), nodes)),
        "edge_auroc_traced": _r(traced_auroc([k[up] for k in found.kept], flat_truth)),
        "node_auroc_traced": _r(traced_auroc([components_of(graph, k) for k in found.kept], nodes)),
        "cmd": _r(
            _cmd([float(k.sum()) / int(up.sum()) for k in found.kept], list(found.faithfulness))
        ),
        "sweep": found.to_json(),
    }


def circuit_edges(graph: Graph, roles: dict[str, Any]) -> Tensor:
    """The course's template as component-level edges, from ``circuit``'s roles, read as
    the true edges are (values, not the queries and keys that pick positions): the
    embeddings into the tally head's values, the tally into MLP 0, MLP 0 into each
    reader's values, and the readers into the logits."""
    names = {s.name: i for i, s in enumerate(graph.senders)}
    kept = torch.zeros_like(graph.upstream)
    tally = roles.get("tally_head")
    readers = [roles.get(k) for k in ("elevation_head", "negative_head")]
    readers = [r for r in readers if r in names]
    for r, rec in enumerate(graph.receivers):
        if tally in names and rec.name == tally and rec.input == "v":
            kept[r, names["embed"]] = True
        if tally in names and rec.name == "mlp0":
            kept[r, names[tally]] = True
        if rec.name in readers and rec.input == "v":
            kept[r, names["mlp0"]] = True
        if rec.input == "logits":
            for h in readers:
                kept[r, names[h]] = True
    return kept & graph.upstream


def _circuit(
    model: BracketTransformer, runs: Runs, n: int, truth: Tensor, nodes: Tensor
) -> dict[str, Any]:
    found = run(model, evaluation_set(n, seed=0), seed=0, stages=COMMAND_STAGES["circuit"])
    localisation = found.to_json()["localisation"]
    assert isinstance(localisation, dict)
    roles = {k: v.get("location") for k, v in localisation.items() if isinstance(v, dict)}
    graph, up = runs.graph, runs.graph.upstream
    kept = circuit_edges(graph, roles)
    f = runs.faithfulness(runs.m((~kept).float()[None, :, :, None]))[0]
    point = kept[up]
    return {
        "level": "component",
        "edge_auroc": _r(auroc(point.float(), truth[up])),
        "node_auroc": _r(auroc(components_of(graph, kept).float(), nodes)),
        "edge_auroc_traced": _r(traced_auroc([point], truth[up])),
        "node_auroc_traced": _r(traced_auroc([components_of(graph, kept)], nodes)),
        "cmd": _r(abs(1 - float(f[0]))),
        "roles": {
            k: roles.get(k)
            for k in ("tally_head", "read_position", "elevation_head", "negative_head")
        },
    }


def _optimum(model: BracketTransformer, spec: CircuitSpec) -> dict[str, Any]:
    """The smallest node-induced circuit with f >= 0.95 against the true nodes."""
    pairs = make_pairs(evaluation_set(OPTIMUM_STRINGS, seed=1), 0)
    runs = Runs.build(model, pairs, "counterfactual", 0)
    subsets, m = node_circuits_m(runs)
    f, _ = runs.faithfulness(m)
    comps = [s.name for s in runs.graph.senders[1:]]
    true = set(true_components(spec))
    mine = torch.tensor([c in true for c in comps])
    out: dict[str, Any] = {"true_nodes_f": _r(float(f[(subsets == mine).all(1)][0]))}
    for k in range(len(comps) + 1):
        at = (subsets.sum(1) == k).nonzero()[:, 0]
        best = at[f[at].argmax()]
        if f[best] >= 0.95:
            found = {c for c, keep in zip(comps, subsets[best].tolist(), strict=True) if keep}
            out |= {
                "components": sorted(found),
                "f": _r(float(f[best])),
                "jaccard": _r(len(found & true) / len(found | true)),
            }
            return out
    return out | {"components": None, "f": None, "jaccard": None}


def _site_component(site: Any) -> str | None:
    if site.head is not None:
        return f"{site.layer}.{site.head}"
    return f"mlp{site.layer}" if site.hook.endswith("mlp.hook_post") else None


def _explain(model: BracketTransformer, spec: CircuitSpec, n: int) -> dict[str, Any]:
    """explain's default search: does each planted reader's variable pass at its head at
    position 0, is that its earliest passing location (the one explain names), and what
    passes at strict nodes.

    A variable counts as the planted one when it is the same variable to interchanges
    (:func:`~bracketlens.algorithms.equivalence.same_variable`: every interchange on the
    check set gives the same counterfactual label under the model that names it as the
    planted atom's under the planted rule), whatever its name.
    """
    # one process: the benchmark scores models in parallel itself (the same result)
    result = explain(model, evaluation_set(n, seed=0), seed=0, split=False)
    named = [a for a in result.variables if a.passes]
    planted = [
        node for node in spec.nodes if node.positions == (0,) and node.variable in ATOM_NAMES
    ]
    same = _same_as(named, spec, [node.variable for node in planted])
    found, earliest = [], []
    for node in planted:
        mine = [a for a in named if same[a.model, a.variable, node.variable]]
        at = [(_site_component(loc.site), loc.positions) for a in mine for loc in a.passing_at]
        if (node.component, (0,)) in at:
            found.append(node.variable)
        if any((_site_component(a.location.site), a.location.positions) == (node.component, (0,))
               for a in mine):  # fmt: skip
            earliest.append(node.variable)
    strict = set(strict_nodes(spec, model.cfg))
    false = sorted(
        {
            f"{a.variable} at {loc.label}"
            for a in named
            for loc in a.passing_at or (a.location,)
            if any((_site_component(loc.site), p) in strict for p in loc.positions)
        }
    )
    return {
        "recall": _r(len(found) / len(planted)) if planted else None,
        "found": found,
        "named_there": earliest,
        "planted": [node.label for node in planted],
        "false_positives": len(false),
        "false_positive_sites": false,
        "best_model": result.best_model,
        "named": sorted(f"{a.variable} at {a.location.label}" for a in named),
        "passing_at": sorted(
            {f"{a.variable} at {loc.label}" for a in named for loc in a.passing_at}
        ),
    }


#: the grammar's atoms: the planted readers' variables are among them
ATOM_NAMES = frozenset(a.name for a in CANDIDATE_ATOMS)


def _same_as(
    named: list[Any], spec: CircuitSpec, planted: list[str]
) -> dict[tuple[str, str, str], bool]:
    """(model, variable, planted variable) -> one variable to interchanges."""
    models = {m.name: m for m in default_models(list(MODELS.values()))}
    rule = planted_rule(spec.kind)
    out = {}
    for a in named:
        for name in planted:
            out[a.model, a.variable, name] = a.variable == name or same_variable(
                models[a.model], a.variable, rule, name
            )
    return out


def planted_rule(kind: str) -> CausalModel:
    """The planted circuit's rule as a causal model of its two atoms."""
    a, b = RULE_ATOMS[kind]
    first = ("atom", a) if kind == "course" else ("not", ("atom", a))
    return atom_model(f"planted {kind}", ("and", first, ("not", ("atom", b))))


def explain_row(
    path: Path, spec: CircuitSpec, kind: str, ok: bool, why: list[str], record: Any, n: int
) -> dict[str, Any]:
    """One row with ``explain`` alone on ``n`` strings (``--explain-only``)."""
    clock = time.perf_counter()
    explained = _explain(load_model(str(path)), spec, n)
    seconds = {"explain": round(time.perf_counter() - clock, 1)}
    return {"model": spec.name, "kind": kind, "accepted": ok, "why_not": why,
            "explain": explained, "seconds": seconds}  # fmt: skip


def _runs(model: BracketTransformer, n: int) -> tuple[Runs, Tensor, Tensor]:
    """``discover``'s runs on ``n`` evaluation strings: the runs, the rows circuits are
    chosen on, and the live position-level edges."""
    pairs = make_pairs(evaluation_set(n, seed=0), 0)
    runs = Runs.build(model, pairs, "counterfactual", 0)
    return runs, halves(pairs, 0)[0], runs.graph.live((pairs.clean != PAD).any(0))


def score_model(
    path: Path,
    spec: CircuitSpec,
    kind: str,
    ok: bool,
    why: list[str],
    record: Any,
    n: int,
    explain_n: int,
    reference_n: int,
) -> dict[str, Any]:
    """One row of the table: every detector on the model at ``path``; EAP and EAP-IG on
    ``n`` strings' pairs, exact patching, ACDC and ``circuit`` on ``reference_n``'s."""
    model = load_model(str(path))
    runs, chosen, live = _runs(model, n)
    graph = runs.graph
    truth = true_edges(spec, graph, runs.width)
    strict = strict_edges(spec, graph, runs.width)
    nodes = component_truth(graph, true_components(spec))
    detectors: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def timed(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        print(f"{spec.name}: {name} in {seconds[name]} s", file=sys.stderr, flush=True)

    for method in ("eap", "eap-ig"):
        scores = edge_scores(runs, chosen, method, live)
        detectors[method] = _ranked(runs, scores, live, truth & live, nodes, "position")
        detectors[method]["edge_auroc_strict"] = _r(_against(scores, truth, strict & live))
        timed(method)
    if reference_n != n:
        runs, chosen, _ = _runs(model, reference_n)
    comp = graph.upstream[:, :, None]
    comp_truth = truth.any(-1)
    exact = edge_scores(runs, chosen, "exact", comp)
    detectors["exact"] = _ranked(runs, exact, comp, comp_truth[:, :, None], nodes, "component")
    timed("exact")
    detectors["acdc"] = _acdc(runs, chosen, comp_truth, nodes)
    timed("acdc")
    detectors["circuit"] = _circuit(model, runs, reference_n, comp_truth, nodes)
    timed("circuit")
    optimum = _optimum(model, spec)
    timed("optimum")
    explained = (
        _explain(model, spec, explain_n) if explain_n else {"recall": None, "false_positives": None}
    )
    timed("explain")
    row = {
        "model": spec.name,
        "kind": kind,
        "accepted": ok,
        "why_not": why,
        "circuit": [node.label for node in spec.nodes],
        "true_nodes": true_components(spec),
        "n_true_edges": {"position": int((truth & live).sum()), "component": int(comp_truth.sum())},
        "detectors": detectors,
        "optimum": optimum,
        "explain": explained,
        "seconds": seconds,
    }
    if record is not None:
        row["planting"] = {
            k: record[k]
            for k in (
                "accuracy",
                "iia",
                "strict_worst",
                "strict_bound",
                "circuit_alone_accuracy",
                "train_seconds",
            )
        }
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each detector's mean and lowest score over the accepted planted models, and explain's."""
    used = [r for r in rows if r["kind"] == "planted" and r["accepted"]]
    out: dict[str, Any] = {
        "planted_models": sum(r["kind"] == "planted" for r in rows),
        "accepted": len(used),
        "true_edges": EDGE_RULE,
    }
    for name in DETECTORS:
        for key in ("edge_auroc", "edge_auroc_strict", "node_auroc", "edge_auroc_traced", "cmd"):
            scored = [r["detectors"][name] for r in used if "detectors" in r]
            vals = [d[key] for d in scored if d.get(key) is not None]
            if vals:
                out[f"{name}.{key}"] = {"mean": _r(sum(vals) / len(vals)), "min": _r(min(vals))}
    hits = [r["explain"]["recall"] for r in used if r["explain"]["recall"] is not None]
    out["explain"] = {
        "recall": _r(sum(hits) / len(hits)) if hits else None,
        "false_positives": sum(r["explain"]["false_positives"] or 0 for r in used)
        if hits
        else None,
    }
    return out


def table(out: dict[str, Any]) -> str:
    """The rows and the summary as text."""
    lines = [
        f"{'model':<14} {'acc':>6} {'ok':<3} "
        + " ".join(f"{d + ' e/n/cmd':<22}" for d in DETECTORS)
        + " optimum   explain"
    ]
    for r in out["rows"]:
        acc = r.get("planting", {}).get("accuracy", 1.0)
        cells = []
        for d in DETECTORS:
            s = r.get("detectors", {}).get(d, {})
            cells.append(
                f"{_fmt(s.get('edge_auroc'))}/{_fmt(s.get('node_auroc'))}/{_fmt(s.get('cmd')):<8}"
            )
        ex = r["explain"]
        lines.append(
            f"{r['model']:<14} {acc:>6.3f} {'yes' if r['accepted'] else 'NO':<3} "
            + " ".join(f"{c:<22}" for c in cells)
            + f" {_fmt(r.get('optimum', {}).get('jaccard')):<9} recall {_fmt(ex['recall'])},"
            f" {ex['false_positives'] if ex['false_positives'] is not None else '-'} false"
        )
        if "planting" in r:
            p = r["planting"]
            lines.append(
                f"{'':<14} IIA {p['iia']}; worst strict {p['strict_worst']} "
                f"(bound {p['strict_bound']}); {'; '.join(r['why_not'])}"
            )
    lines.append("true edges: " + out["summary"]["true_edges"])
    lines.append(f"summary: {out['summary']}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
