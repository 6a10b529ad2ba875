"""Benchmark: do `explain`'s bounds hold when pairs that share a string are not independent?

Usage:
    bracketlens explain [--weights PATH] [--search thorough] --json --no-cache > out.json
    python benchmarks/explain_clustered.py out.json [--weights PATH] [--model NAME]
        [--resamples 4000]

A guard's bound is Wilson's interval at the effective number of test pairs: the
pairs over the design effect of pairs clustered by base string and by source
string (``bracketlens.stats.design_effect``). A base or a source string is in many
pairs, and whether a patch carries the variable depends on the strings (a source
whose suffix goes one past 0 is carried less often than one that goes far). This
script draws the test pairs of one model again, exactly as ``explain`` drew them
(its seed, strings and search's pair counts, read from the JSON; the model must be
a confirmed one, whose test pairs are not thinned), measures each variable's chosen
patch on them, checks that every pair kind's IIA equals the JSON's, and prints each
kind's guard bound (from the JSON) and plain Wilson lower bound beside 95% intervals
that resample whole bases and whole sources instead of pairs.

``--model``: the causal model (default: the JSON's best model, else its closest).
Exits 1 if the IIA it measures differs from the JSON's.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from bracketlens.algorithms.align import outcome
from bracketlens.algorithms.causal import MODELS
from bracketlens.algorithms.explain import drawn_pairs, explain_splits
from bracketlens.algorithms.generate import default_models
from bracketlens.algorithms.locations import Location, pair_activations, sites
from bracketlens.algorithms.pairs import KINDS, PairCounts
from bracketlens.algorithms.search import Search
from bracketlens.data.generate import evaluation_set
from bracketlens.model.checkpoint import read_model
from bracketlens.stats import bootstrap, wilson


def resampled(correct: np.ndarray, cluster: np.ndarray, n: int, seed: int) -> list[float]:
    """The 95% interval of the mean when whole clusters are resampled: a ratio of the
    clusters' mean hits to their mean size."""
    _, which = np.unique(cluster, return_inverse=True)
    per = np.stack([np.bincount(which, weights=correct.astype(float)), np.bincount(which)], 1)
    found = bootstrap(per, lambda means: means[:, 0] / means[:, 1], n_resamples=n, seed=seed)
    return [found.low, found.high]


def guard_bound(variable: dict, name: str) -> float | None:
    """The bound the JSON's guard ``name`` of this variable was judged by."""
    return next((g["bound"] for g in variable["guards"] if g["guard"] == name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="`bracketlens explain --json` output")
    parser.add_argument("--weights", default=None, help="the checkpoint explain ran on")
    parser.add_argument("--model", default=None)
    parser.add_argument("--resamples", type=int, default=4000)
    args = parser.parse_args()
    with open(args.json) as f:
        found = json.load(f)
    name = args.model or (
        found["best_model"] if found["best_model"] != "none" else found["closest"]["model"]
    )
    budget = found["budget"]
    seed, n = found["seed"], found["n"]
    model = read_model(args.weights)
    data = evaluation_set(n, seed=seed)
    tokens = data.tokens.numpy()
    split_of = explain_splits(len(data), seed)
    causal = next(m for m in default_models(list(MODELS.values()), "all") if m.name == name)
    # the confirmed models' test pairs, drawn as explain drew them
    search = Search(PairCounts(**budget["counts"]), confirm_test=budget["confirm_test"])
    values = causal.values(tokens)
    rows, same = [], True
    for variable in causal.intervened:
        v = next(v for v in found["variables"] if v["model"] == name and v["name"] == variable.name)
        if v["trivial"]:
            continue
        test = drawn_pairs(causal, variable, values, data, split_of, search, seed)
        test = test.in_split("test")
        site = next(s for s in sites(model.cfg) if s.hook == v["hook"] and s.head == v["head"])
        basis = None if v["basis"] is None else torch.tensor(v["basis"], dtype=torch.float32)
        acts = pair_activations(model, data.tokens, test.base, test.source, [site])
        location = Location(site, tuple(v["positions"]))
        correct = outcome(model, acts, location, basis).predicted == test.label
        for k, kind in enumerate(KINDS):
            rows_k = test.kind == k
            if not rows_k.any():
                continue
            c = correct[rows_k]
            same &= abs(c.mean() - v["iia_by_kind"][kind]) < 1e-9
            rows.append({
                "variable": variable.name, "kind": kind, "pairs": len(c),
                "iia": float(c.mean()), "json_iia": v["iia_by_kind"][kind],
                "guard_low": guard_bound(v, f"iia_{kind}"),
                "wilson_low": wilson(int(c.sum()), len(c)).low,
                "bases": len(np.unique(test.base[rows_k])),
                "by_bases": resampled(c, test.base[rows_k], args.resamples, 0),
                "sources": len(np.unique(test.source[rows_k])),
                "by_sources": resampled(c, test.source[rows_k], args.resamples, 1),
            })  # fmt: skip
    print(json.dumps({"model": name, "search": budget, "rows": rows,
                      "same_as_json": bool(same)}, indent=1))  # fmt: skip
    if not same:
        print("the IIA measured here differs from the JSON's: another search or code?",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
