"""Benchmark: EAP's and EAP-IG's edge scores against exact single-edge patching.

Usage: python benchmarks/discover_agreement.py [--weights PATH] [--n 2000] [--seed 0]
       [--top 10] [--json]

On the pairs ``bracketlens discover --n N --seed S`` builds, and on the half of them
it chooses circuits on, every edge is scored by EAP, EAP-IG (inputs) and exact
single-edge patching (:mod:`bracketlens.discovery.single`), at component level and
at position level (the live edges). For each level it prints:

- Spearman's rho of each gradient method's signed scores against exact's, over every
  edge and over the edges that are in the top 10% by absolute score of either;
- each sender's share of positions away from the edit whose output the edit moves by
  more than 10% (where a patched edge carries part of the edit), and f of the
  circuits of every live edge before a position (what leaving out late positions costs);
- faithfulness of each method's top edges at MIB's budgets and at 30% and 40% (position
  level; every tenth edge count at component level), on both halves, so that a
  method's ranking can be told apart from what any ranking of single edges needs;
- the ``--top`` largest disagreements of EAP with exact: among the edges in the top
  10% of either by absolute score, the largest differences of rank by absolute score.
  Each is diagnosed by ``m`` along the straight path from the clean run to the edge
  patched alone (scale 0.25, 0.5, 0.75 of the sender's difference; EAP is the slope
  at 0, exact the value at 1), and by the size of the change at the receiver's input
  against the input itself where there is one (what the receiver's LayerNorm divides by).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import Tensor

from bracketlens.data import evaluation_set
from bracketlens.data.tokens import PAD
from bracketlens.discovery.discover import FRACTIONS, _budgets, _cuts, _edges
from bracketlens.discovery.pairs import halves, make_pairs
from bracketlens.discovery.runs import Runs, sender_outputs
from bracketlens.discovery.scores import gradient_scores
from bracketlens.discovery.single import single_edge_m
from bracketlens.model.names import act_name
from bracketlens.weights.resolve import load_model

METHODS = ("eap", "eap-ig")
LARGE = 0.1  # "large": in the top 10% of live edges by absolute score
SCALES = (0.25, 0.5, 0.75)
SITES = {
    "q": "the query, through ln1 and the attention softmax",
    "k": "a key, through ln1 and the attention softmax of every query",
    "v": "a value, through ln1 (the value path is linear after it)",
    "mlp": "the MLP input, through ln2 and the ReLU",
    "logits": "the logits, through ln_final",
}


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1 = smallest), ties sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts + 1) / 2)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def large(*scores: np.ndarray) -> np.ndarray:
    """Edges in the top ``LARGE`` fraction by absolute score of any of ``scores``."""
    keep = np.zeros(len(scores[0]), dtype=bool)
    for s in scores:
        keep |= np.abs(s) >= np.quantile(np.abs(s), 1 - LARGE)
    return keep


def curves(runs: Runs, scores: dict[str, Tensor], edges: Tensor, level: str, seed: int) -> dict:
    """f of each method's top edges at each budget, on the half circuits are chosen on
    and on the other."""
    chosen, scored = halves(runs.pairs, seed)
    n = int(edges.sum())
    if level == "component":
        budgets = [(k / n, k) for k in range(0, n + 1, 10)]
    else:
        budgets = _budgets(n, level) + [(f, round(f * n)) for f in (0.3, 0.4)]
        budgets.sort()
    out: dict[str, object] = {"fractions": [round(f, 4) for f, _ in budgets]}
    for name, s in scores.items():
        order = torch.argsort(s[edges].abs(), descending=True, stable=True)
        m = runs.m(_cuts(order, edges, [k for _, k in budgets]))
        out[name] = {
            half: [round(float(f), 3) for f in runs.faithfulness(m, rows)[0]]
            for half, rows in (("chosen", chosen), ("held_out", scored))
        }
    return out


def describe(runs: Runs, edges: Tensor, index: Tensor, level: str) -> list[str]:
    """``sender -> receiver.input @ position`` of each of ``index``'s edges."""
    where = edges.nonzero()[index]
    names = []
    for r, s, p in where.tolist():
        rec, snd = runs.graph.receivers[r], runs.graph.senders[s]
        at = "" if level == "component" else f" @{p}"
        names.append(f"{snd.name} -> {rec.name}.{rec.input}{at}")
    return names


def input_sizes(runs: Runs, rows: Tensor, edges: Tensor, picked: Tensor) -> list[float]:
    """For each picked edge: mean |sender's difference| / mean |receiver's input| over the
    rows and positions (the edge's, or every one at component level) where the string has
    a token and the sender's output changes."""
    tokens = runs.pairs.clean[rows]
    names = [act_name(h, i) for i in range(runs.graph.n_layers) for h in ("resid_pre", "resid_mid")]
    names.append(act_name("resid_post", runs.graph.n_layers - 1))
    with torch.no_grad():
        _, cache = runs.model.run_with_cache(tokens, names_filter=names)
        diff = runs.corrupt[rows] - sender_outputs(runs.model, runs.sites, tokens)
    real = tokens != PAD
    sizes = []
    for r, s, p in edges.nonzero()[picked].tolist():
        rec = runs.graph.receivers[r]
        layer = runs.graph.n_layers - 1 if rec.input == "logits" else rec.layer
        hook = "resid_pre" if rec.input in ("q", "k", "v") else "resid_mid"
        hook = "resid_post" if rec.input == "logits" else hook
        x = cache[act_name(hook, layer)]
        at = slice(None) if edges.shape[-1] == 1 else slice(p, p + 1)
        size = diff[:, s, at].norm(dim=-1)
        mask = real[:, at] & (size > 1e-6)  # where the sender's output changes at all
        d, xs = size[mask], x[:, at].norm(dim=-1)[mask]
        sizes.append(float(d.mean() / xs.mean()))
    return sizes


def disagreements(
    runs: Runs, scores: dict[str, Tensor], edges: Tensor, level: str, top: int, seed: int
) -> list[dict[str, object]]:
    """The ``top`` largest rank differences of EAP and exact among large edges, each with
    its path profile and the relative size of the change at the receiver's input."""
    chosen, _ = halves(runs.pairs, seed)
    eap, exact = (scores[k][edges].numpy() for k in ("eap", "exact"))
    r_eap, r_exact = ranks(-np.abs(eap)), ranks(-np.abs(exact))
    gap = np.where(large(eap, exact), np.abs(r_eap - r_exact), -1.0)
    picked = torch.from_numpy(np.argsort(-gap, kind="stable")[:top].copy())
    where = edges.nonzero()[picked]
    only = torch.zeros_like(edges)
    only[where[:, 0], where[:, 1], where[:, 2]] = True
    base = runs.m_model[chosen].double().mean()
    at = (where[:, 0], where[:, 1], where[:, 2])  # in the order of ``picked``
    path = {a: (single_edge_m(runs, chosen, only, a) - base)[at] for a in SCALES}
    sizes = input_sizes(runs, chosen.nonzero()[:, 0], edges, picked)
    names = describe(runs, edges, picked, level)
    rows = []
    for i, k in enumerate(picked.tolist()):
        e, x = float(eap[k]), float(exact[k])
        rows.append({
            "edge": names[i], "eap": round(e, 4), "eap_ig": round(float(scores["eap-ig"][edges][k]), 4),
            "exact": round(x, 4), "rank_eap": int(r_eap[k]), "rank_exact": int(r_exact[k]),
            "path": [round(float(path[a][i]), 4) for a in SCALES] + [round(x, 4)],
            "change_over_input": round(sizes[i], 3), "kind": kind_of(e, x),
            "site": SITES[runs.graph.receivers[int(where[i, 0])].input],
        })  # fmt: skip
    return rows


def kind_of(eap: float, exact: float) -> str:
    """How the patch's effect departs from the slope at the clean run."""
    if eap * exact < 0:
        return "opposite signs: the effect turns over along the path"
    if abs(exact) < abs(eap) / 2:
        return "saturates: the slope at the clean run overstates the effect"
    if abs(exact) > 2 * abs(eap):
        return "grows: the slope at the clean run understates the effect"
    return "within 2x: a rank shift among edges of similar size"


def spread(runs: Runs) -> dict[str, float]:
    """Each sender's share of (row, position) pairs away from the edit whose output moves
    by more than 10% of its size between the clean and the counterfactual run: where a
    patched edge carries the edit's effect."""
    moved = torch.zeros(len(runs.graph.senders))
    count = 0
    for rows in torch.arange(len(runs.pairs)).split(512):
        tokens = runs.pairs.clean[rows]
        clean = sender_outputs(runs.model, runs.sites, tokens)
        far = (runs.corrupt[rows] - clean).norm(dim=-1) > 0.1 * clean.norm(dim=-1)
        away = (tokens != PAD) & (tokens == runs.pairs.corrupt[rows])  # [row, pos]
        moved += (far & away[:, None]).sum((0, 2))
        count += int(away.sum())
    return {snd.name: round(float(moved[s] / count), 3) for s, snd in enumerate(runs.graph.senders)}


def by_position(runs: Runs) -> dict[str, list[float]]:
    """f of the circuits of every live edge before position ``P``, for a series of ``P``:
    how much a circuit loses by leaving out the last positions whole."""
    edges = _edges(runs, "position")
    stops = [*range(6, runs.width, 4), runs.width]
    cuts = []
    for stop in stops:
        kept = edges.clone()
        kept[:, :, stop:] = False
        cuts.append((~kept).float())
    f = runs.faithfulness(runs.m(torch.stack(cuts)))[0]
    share = [float(edges[:, :, :stop].sum() / edges.sum()) for stop in stops]
    return {"positions_below": stops, "fraction": [round(x, 3) for x in share],
            "faithfulness": [round(float(x), 3) for x in f]}  # fmt: skip


def level_report(runs: Runs, level: str, top: int, seed: int) -> dict[str, object]:
    chosen, _ = halves(runs.pairs, seed)
    edges = _edges(runs, level)
    scores: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    for method in (*METHODS, "exact"):
        start = time.perf_counter()
        if method == "exact":
            m = single_edge_m(runs, chosen, edges) - runs.m_model[chosen].double().mean()
            scores[method] = (m * edges).float()
        else:
            s = gradient_scores(runs, chosen, method)
            scores[method] = (s.sum(-1, keepdim=True) if level == "component" else s) * edges
        seconds[method] = round(time.perf_counter() - start, 1)
    exact = scores["exact"][edges].numpy()
    rho = {}
    for method in METHODS:
        s = scores[method][edges].numpy()
        keep = large(s, exact)
        rho[method] = {"all": round(spearman(s, exact), 3), "large": round(spearman(s[keep], exact[keep]), 3),
                       "n_large": int(keep.sum())}  # fmt: skip
    return {
        "n_edges": int(edges.sum()),
        "seconds": seconds,
        "spearman_vs_exact": rho,
        "faithfulness": curves(runs, scores, edges, level, seed),
        "disagreements": disagreements(runs, scores, edges, level, top, seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--n", type=int, default=2000, help="strings (about half give pairs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=10, help="disagreements to diagnose")
    parser.add_argument("--levels", default="component,position")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights)
    pairs = make_pairs(evaluation_set(args.n, seed=args.seed), args.seed)
    runs = Runs.build(model, pairs, "counterfactual", args.seed)
    out: dict[str, object] = {"n_pairs": pairs.n_pairs, "fractions_of_mib": list(FRACTIONS)}
    out["moved_away_from_the_edit"] = spread(runs)
    out["every_edge_before_a_position"] = by_position(runs)
    for level in args.levels.split(","):
        out[level] = level_report(runs, level, args.top, args.seed)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
