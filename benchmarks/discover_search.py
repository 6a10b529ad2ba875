"""Benchmark: how faithful can a position-level circuit of a given size be?

Usage: python benchmarks/discover_search.py [--weights PATH] [--n 1000] [--seed 0]
       [--fraction 0.2] [--steps 150]

``bracketlens discover`` keeps a method's top edges by absolute score. This script asks
whether any circuit of the same size does better, whatever its edges' scores: it
searches for the circuit of ``--fraction`` of the live edges with the highest
faithfulness on the half of the pairs circuits are chosen on. Each edge has a logit,
started from exact single-edge patching's score (or EAP-IG's, ``--init``); every step keeps the top edges by logit, patches every
other edge (counterfactual ablation, the same patching as :meth:`Runs.m`, differentiated
through the kept/patched weights), and moves the logits along the gradient of ``f``
through a sigmoid (a straight-through estimate, as in edge pruning, Bhaskar et al.,
2024). The best circuit met is scored on both halves through the runner, beside EAP-IG's
own circuit of that size (and exact single-edge patching's, when the search starts there).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor

from bracketlens.data import evaluation_set
from bracketlens.discovery.discover import _cuts, _edges
from bracketlens.discovery.pairs import halves, make_pairs
from bracketlens.discovery.runs import Runs, metric
from bracketlens.discovery.scores import edge_scores
from bracketlens.interventions.edges import edge_hooks, split_inputs
from bracketlens.model.predict import iter_batches
from bracketlens.weights.resolve import load_model

BATCH = 250  # rows differentiated at once


def f_of(runs: Runs, rows: Tensor, keep: Tensor) -> Tensor:
    """Differentiable f over ``rows`` of the circuit with ``keep`` (1 kept, 0 patched;
    fractions interpolate) on every edge."""
    tokens = runs.pairs.clean[rows]
    total = torch.zeros(())
    for idx, batch in iter_batches(tokens, BATCH):
        at = rows[idx]
        cut = (1 - keep)[None].expand(len(at), -1, -1, -1)
        hooks = edge_hooks(runs.sites, runs.corrupt[at], cut[:, :, :, : batch.shape[1]])
        with split_inputs(runs.model), runs.model.hooks(fwd_hooks=hooks):
            total = (
                total + metric(runs.model(batch, class_only=True)[:, 0], runs.pairs.sign[at]).sum()
            )
    full, empty = runs.m_model[rows].mean(), runs.m_empty[rows].mean()
    return (total / len(rows) - empty) / (full - empty)


def search(runs: Runs, rows: Tensor, edges: Tensor, start: Tensor, k: int, steps: int) -> Tensor:
    """The best circuit of ``k`` edges met (its mask), from ``start``'s ranking."""
    live = edges.nonzero()
    score = start[edges].abs()
    logit = ((score / score.median()).clamp(min=1e-6).log()).clone().requires_grad_(True)
    opt = torch.optim.Adam([logit], lr=0.05)
    best, best_f = None, -1.0
    for step in range(steps):
        top = torch.topk(logit.detach(), k).indices
        hard = torch.zeros(len(live))
        hard[top] = 1.0
        soft = torch.sigmoid(logit)
        keep = torch.zeros(edges.shape)
        keep = keep.index_put((live[:, 0], live[:, 1], live[:, 2]), hard + soft - soft.detach())
        with torch.enable_grad():
            f = f_of(runs, rows, keep)
            opt.zero_grad()
            (-f).backward()
        opt.step()
        value = float(f.detach())
        if value > best_f:
            best_f, best = value, hard.bool()
        if step % 10 == 0:
            print(f"step {step}: f {value:.3f} (best {best_f:.3f})", flush=True)
    assert best is not None
    mask = torch.zeros_like(edges)
    mask[live[best][:, 0], live[best][:, 1], live[best][:, 2]] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--n", type=int, default=1000, help="strings (about half give pairs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.2, help="of the live edges")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--init", default="exact", choices=["exact", "eap-ig"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).requires_grad_(False)
    pairs = make_pairs(evaluation_set(args.n, seed=args.seed), args.seed)
    runs = Runs.build(model, pairs, "counterfactual", args.seed)
    chosen, scored = halves(pairs, args.seed)
    edges = _edges(runs, "position")
    k = round(args.fraction * int(edges.sum()))
    started = time.perf_counter()
    methods = dict.fromkeys(("eap-ig", args.init))  # exact's scores only to start from them
    scores = {m: edge_scores(runs, chosen, m, edges) for m in methods}
    found = search(runs, chosen.nonzero()[:, 0], edges, scores[args.init], k, args.steps)
    cuts = [
        _cuts(torch.argsort(s[edges].abs(), descending=True), edges, [k])[0]
        for s in scores.values()
    ]
    m = runs.m(torch.stack([*cuts, (~found).float()]))
    out = {"n_pairs": pairs.n_pairs, "n_live_edges": int(edges.sum()), "n_edges": k,
           "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    for half, rows in (("chosen", chosen), ("held_out", scored)):
        f = runs.faithfulness(m, rows)[0].tolist()
        out[half] = dict(zip([*scores, "searched"], (round(x, 3) for x in f), strict=True))
    where = found.nonzero()
    out["searched_by_layer_of_receiver"] = {
        name: int(sum(runs.graph.receivers[r].name.startswith(name) for r in where[:, 0].tolist()))
        for name in ("0.", "mlp0", "1.", "mlp1", "2.", "mlp2", "logits")
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
