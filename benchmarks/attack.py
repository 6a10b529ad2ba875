"""Benchmark: ``bracketlens attack`` at its default budget on the course checkpoint.

Usage: python benchmarks/attack.py [--weights PATH] [--threads 1|default]

Runs, each as its own process, ``bracketlens evaluate --n 200000`` (as many strings as
the attack's default budget evaluates) and ``bracketlens attack --json`` on the same
checkpoint, and prints wall and CPU time of both, their ratio, and the attack's most
confident wrong unbalanced string. The search must beat the course's best string
(P(balanced) 0.9998560) by the margin the README's findings table states: it exits 1
when its best unbalanced string stays at or below 0.99997.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from commands import DEFAULT_COURSE, thread_env  # type: ignore[import-not-found]

from bracketlens.adversarial.attack import DEFAULT_BUDGET

COURSE_BEST_P = 0.9998560  # the course's published 99.9856%
CLAIM_P = 0.99997  # the README's finding, rounded down: 0.9999755 on this checkpoint


def run(args: list[str], threads: str) -> tuple[dict[str, float], str]:
    """Wall and CPU seconds and peak RSS of ``bracketlens ARGS`` as a process, and its stdout."""
    env = thread_env(threads, dict(os.environ))
    command = [sys.executable, "-m", "bracketlens.cli", *args]
    before, start = os.times(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    cpu = (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_COURSE / "brackets_model_state_dict.pt"))
    parser.add_argument("--threads", default="default", choices=["1", "default"])
    args = parser.parse_args()
    weights = ["--weights", args.weights]
    base, _ = run(["evaluate", *weights, "--n", str(DEFAULT_BUDGET), "--seed", "0"], args.threads)
    ours, out = run(["attack", *weights, "--json"], args.threads)
    found = json.loads(out)
    unbalanced = [s for s in found if not s["label"]]
    best = max(s["p_balanced"] for s in unbalanced) if unbalanced else None
    result = {
        "evaluate": base,
        "attack": ours,
        "wall_ratio": round(ours["wall_s"] / base["wall_s"], 2),
        "best_unbalanced_p": best,
        "course_best_p": COURSE_BEST_P,
        "claim_p": CLAIM_P,
    }
    print(json.dumps(result, indent=2))
    if best is None or best <= CLAIM_P:
        raise SystemExit(f"the attack's best unbalanced string is at {best}, not above {CLAIM_P}")


if __name__ == "__main__":
    main()
