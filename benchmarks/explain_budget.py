"""Benchmark: does `explain`'s verdict survive a bigger search budget and another thread count?

Usage:
    python benchmarks/explain_budget.py [--weights PATH ...] [--n 10000] [--top 3]
        [--dims 1,2,4,8] [--steps 30,120] [--seeds-dir DIR]

For each model (the bundled default and the course checkpoint unless ``--weights``
names others; ``--seeds-dir`` adds every ``seed-*.safetensors`` a ``bracketlens seeds``
run wrote):

1. the default search on one thread: the verdict, the passing models and the top
   ``--top`` models by IIA;
2. the same search on torch's default thread count (``os.cpu_count()`` threads);
3. a budget four times larger: four times the rotation steps (first fits and refits),
   the screened pairs per cell and the rotations' training pairs, twice the locations
   that get rotations, and rotations of dimension 1, 2, 4 and 8 (validation and test pairs
   are the default's, so the guards are measured with the same power);
4. IIA against budget for the top models: one rotation dimension at a time
   (``--dims``) and each number of steps (``--steps``), whole-vector patches off.

Prints one JSON object per model; ``same_verdict_4x`` and ``same_verdict_threads``
say whether the passing models of step 1 are those of steps 3 and 2.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bracketlens import evaluation_set, load_model
from bracketlens.algorithms.causal import MODELS, CausalModel
from bracketlens.algorithms.explain import explain
from bracketlens.algorithms.generate import default_models
from bracketlens.algorithms.pairs import PairCounts
from bracketlens.algorithms.search import Search
from bracketlens.data.dataset import BracketDataset
from bracketlens.model.transformer import BracketTransformer

COURSE = Path(__file__).resolve().parents[2] / "shared" / "arena" / "brackets_model_state_dict.pt"


def four_times(search: Search) -> Search:
    """The search with four times the budget for rotations and screening."""
    c = search.counts
    return replace(
        search,
        counts=PairCounts(train=4 * c.train, validation=c.validation, test=c.test),
        screen_per_cell=4 * search.screen_per_cell,
        das_top=2 * search.das_top,
        das_dims=(1, 2, 4, 8),
        das_steps=4 * search.das_steps,
        refine_steps=4 * search.refine_steps,
    )


def _run(
    model: BracketTransformer,
    data: BracketDataset,
    search: Search,
    models: list[CausalModel] | None = None,
    threads: int = 1,
) -> tuple[dict[str, Any], float]:
    """explain's JSON and its wall seconds, on ``threads`` threads."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = explain(model, data, 0, models=models, search=search).to_json()
    return result, round(time.perf_counter() - start, 1)


def _summary(result: dict[str, Any], seconds: float, top: int) -> dict[str, object]:
    """The verdict, the passing models and the ``top`` models by IIA."""
    ranked = sorted(result["models"], key=lambda m: -m["iia"])[:top]
    keep = ("name", "iia", "telling_iia", "passes", "margin")
    return {
        "seconds": seconds,
        "best_model": result["best_model"],
        "passing": result["passing"],
        "top": [{k: m[k] for k in keep} for m in ranked],
        "closest": (result.get("closest") or {}).get("model"),
    }


def budget_curve(
    model: BracketTransformer,
    data: BracketDataset,
    names: list[str],
    dims: list[int],
    steps: list[int],
) -> list[dict[str, object]]:
    """IIA of each named model with rotations of one dimension and one step count."""
    every = {m.name: m for m in default_models(list(MODELS.values()), "all")}
    chosen: list[CausalModel] = [every[n] for n in names if n in every]
    rows = []
    for dim in dims:
        for n_steps in steps:
            search = Search(das_dims=(dim,), das_steps=n_steps, whole_vector=False)
            result, seconds = _run(model, data, search, chosen)
            rows.append({
                "dim": dim, "steps": n_steps, "seconds": seconds,
                "iia": {m["name"]: round(m["iia"], 3) for m in result["models"]},
                "passes": {m["name"]: m["passes"] for m in result["models"]},
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append", default=None)
    parser.add_argument("--seeds-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--dims", default="1,2,4,8")
    parser.add_argument("--steps", default="30,120")
    parser.add_argument("--skip-curve", action="store_true", help="steps 1-3 only")
    args = parser.parse_args()
    weights: list[str | None] = list(args.weights) if args.weights else [None, str(COURSE)]
    if args.seeds_dir is not None:
        weights += [str(p) for p in sorted(args.seeds_dir.glob("**/seed-*.safetensors"))]
    data = evaluation_set(args.n, seed=0)
    dims = [int(d) for d in args.dims.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    for w in weights:
        model = load_model(w)
        default, t1 = _run(model, data, Search())
        threaded, tn = _run(model, data, Search(), threads=os.cpu_count() or 1)
        bigger, t4 = _run(model, data, four_times(Search()))
        out = {
            "weights": w or "bundled default",
            "n": args.n,
            "cpus": os.cpu_count(),
            "default": _summary(default, t1, args.top),
            "default_threads": _summary(threaded, tn, args.top),
            "four_times": _summary(bigger, t4, args.top),
            "same_verdict_threads": default["passing"] == threaded["passing"],
            "same_verdict_4x": default["passing"] == bigger["passing"],
        }
        if not args.skip_curve:
            ranked = sorted(default["models"], key=lambda m: -m["iia"])[: args.top]
            names = [m["name"] for m in ranked]
            out["curve"] = budget_curve(model, data, names, dims, steps)
        print(json.dumps(out, indent=2), flush=True)


if __name__ == "__main__":
    main()
