"""Benchmark: 4 seeds on 2 Ray workers against the in-process default, as a user runs them.

Usage: python benchmarks/seeds.py [--models 4] [--steps 500] [--recipe short] [--ray-first]

Each run is `bracketlens seeds ... --json` in its own process (start-up, Ray's
included) into a fresh folder, so nothing is reused. Target: the
2-worker run takes at most 0.6x the wall time of `--workers 1` on 2 cores.
The load average is printed beside each run: on a shared machine the ratio
says as much about the neighbours as about the code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.6


def run(workers: int, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """One sweep as a process; its wall time, the load around it and its per-seed seconds."""
    cmd = [sys.executable, "-m", "bracketlens.cli", "seeds", "--models", str(args.models)]
    cmd += ["--recipe", args.recipe, "--steps", str(args.steps), "--workers", str(workers)]
    cmd += ["--out", str(folder / f"workers-{workers}"), "--json"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    rows = json.loads(done.stdout)["rows"]
    return {
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "seed_seconds": [r["seconds"] for r in rows],
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500, help="per seed (short recipe: 3000)")
    parser.add_argument("--recipe", default="short")
    parser.add_argument(
        "--ray-first", action="store_true", help="run the 2-worker sweep first (load drifts)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.ray_first:
            two = run(2, args, Path(tmp))
            one = run(1, args, Path(tmp))
        else:
            one = run(1, args, Path(tmp))
            two = run(2, args, Path(tmp))
    same = [_stable(r) for r in one.pop("rows")] == [_stable(r) for r in two.pop("rows")]
    ratio = float(two["wall_seconds"]) / float(one["wall_seconds"])  # type: ignore[arg-type]
    result = {
        "cpus": os.cpu_count(),
        "models": args.models,
        "recipe": args.recipe,
        "steps": args.steps,
        "in_process": one,
        "ray_2_workers": two,
        "ratio_2_workers_to_1": round(ratio, 3),
        "target": TARGET,
        "meets_target": ratio <= TARGET,
        "same_rows": same,
    }
    print(json.dumps(result, indent=2))


def _stable(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if k not in ("seconds", "reused")}


if __name__ == "__main__":
    main()
