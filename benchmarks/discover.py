"""Benchmark: ``bracketlens discover`` against ``bracketlens evaluate`` on the same strings.

Usage: python benchmarks/discover.py [--n 4000] [--weights PATH] [--threads 1|default]

Runs, each as its own process, ``bracketlens evaluate --n N`` (start-up plus one
forward pass) and ``bracketlens discover --n N`` (EAP-IG at position level, the
default; ``--n 4000`` gives about 2,000 pairs, each in both orders), and prints wall
and CPU time of both and their ratio (target: at most 5x). Then it times the exact
node optimum alone, in process, on the same pairs (target: within 60 s on 2 cores).
On a machine shared with other work, wall times are noisy; CPU times less so.
"""

from __future__ import annotations

import argparse
import json
import time

from commands import timed  # type: ignore[import-not-found]

from bracketlens.data import evaluation_set
from bracketlens.discovery.optimum import node_circuits_m
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.weights.resolve import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="strings (about half give pairs)")
    parser.add_argument("--weights", default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--threads", default="1", choices=["1", "default"])
    args = parser.parse_args()
    weights = [] if args.weights is None else ["--weights", args.weights]
    data = ["--n", str(args.n), "--seed", "0"]
    base = timed(["evaluate", *weights, *data], args.threads)
    ours = timed(["discover", *weights, *data], args.threads)
    pairs = make_pairs(evaluation_set(args.n, seed=0))
    runs = Runs.build(load_model(args.weights), pairs, "counterfactual", 0)
    start = time.perf_counter()
    node_circuits_m(runs)
    optimum_s = time.perf_counter() - start
    result = {
        "n_pairs": pairs.n_pairs,
        "evaluate": base,
        "discover": ours,
        "wall_ratio": round(ours["wall_s"] / base["wall_s"], 2),
        "cpu_ratio": round(ours["cpu_s"] / base["cpu_s"], 2),
        "wall_ratio_target": 5.0,
        "node_optimum_s": round(optimum_s, 1),
        "node_optimum_target_s": 60.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
