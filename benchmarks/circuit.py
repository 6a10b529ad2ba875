"""Benchmark: `bracketlens circuit` at its default sample of 10,000 strings.

Usage: python benchmarks/circuit.py [--weights PATH] [--n 10000]

Times the circuit command's stages of the pipeline (localisation on one half;
mean ablations, resampling tests, path patching and attribution patching on the
other) in this process and prints the ratio of the total to its target, 2 minutes.
``benchmarks/commands.py`` times the command as a process against
``bracketlens evaluate``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bracketlens import evaluation_set, load_model
from bracketlens.pipeline import run
from bracketlens.plan import COMMAND_STAGES

TARGET_SECONDS = 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    model = load_model(args.weights)
    data = evaluation_set(args.n, seed=0)  # what `bracketlens circuit` uses by default
    start = time.perf_counter()
    verdict = run(model, data, seed=0, stages=COMMAND_STAGES["circuit"])
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "weights": args.weights or "bundled default",
                "n": args.n,
                "torch_threads": torch.get_num_threads(),
                "seconds": round(seconds, 1),
                "ratio_to_2_min_target": round(seconds / TARGET_SECONDS, 3),
                "loss_recovered": {t.hypothesis: t.recovered()[t.headline] for t in verdict.scrubs},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
