"""Benchmark: `bracketlens explain` at its default 10,000 strings, as a process, against `evaluate`.

Usage: python benchmarks/explain.py [--weights PATH] [--n 10000] [--repeats 1]

Runs ``bracketlens evaluate`` (the baseline: start-up, data generation, one pass
over the strings) and ``bracketlens explain --json`` on the same data, each as a
separate process with start-up included, and prints both wall times, their
ratio, and the ratio of explain's time to its target, 2 minutes. CPU
seconds (user + system) are printed too: on a shared machine they say more than
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 120
CLI = [sys.executable, "-m", "bracketlens.cli"]


def _timed(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) of the process, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs each")
    args = parser.parse_args()
    common = ["--n", str(args.n), "--seed", "0"]
    if args.weights:
        common += ["--weights", args.weights]
    evaluate, evaluate_cpu, _ = min(
        _timed(["evaluate", *common, "--json"]) for _ in range(args.repeats)
    )
    runs = [_timed(["explain", *common, "--json"]) for _ in range(args.repeats)]
    explain, explain_cpu, out = min(runs, key=lambda r: r[0])
    result = json.loads(out)
    print(
        json.dumps(
            {
                "weights": args.weights or "bundled default",
                "n": args.n,
                "cpus": os.cpu_count(),
                "evaluate_seconds": round(evaluate, 1),
                "explain_seconds": round(explain, 1),
                "evaluate_cpu_seconds": round(evaluate_cpu, 1),
                "explain_cpu_seconds": round(explain_cpu, 1),
                "explain_over_evaluate": round(explain / evaluate, 2),
                "ratio_to_2_min_target": round(explain / TARGET_SECONDS, 3),
                "best_model": result["best_model"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
