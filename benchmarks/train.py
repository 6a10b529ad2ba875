"""Benchmark: train the default recipe from scratch; print wall time and held-out accuracy.

Usage: python benchmarks/train.py [--seed 0] [--steps N]

Target: the default checkpoint trains in <= 10 minutes on 2 CPU cores,
with >= 99.95% on 100,000 fresh strings of the evaluation distribution.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bracketlens.model.train import TrainConfig, train

TARGET_SECONDS = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    cfg = TrainConfig(seed=args.seed, **({} if args.steps is None else {"steps": args.steps}))
    start = time.perf_counter()
    result = train(cfg, progress=False)
    wall = time.perf_counter() - start
    held = result.record["held_out"]
    print(
        json.dumps(
            {
                "torch_threads": torch.get_num_threads(),
                "steps": cfg.steps,
                "train_seconds": result.record["train_seconds"],
                "wall_seconds_incl_eval": round(wall, 1),
                "ratio_to_10_min_target": round(result.record["train_seconds"] / TARGET_SECONDS, 3),
                "eval_accuracy": held["evaluation"]["accuracy"],
                "near_miss_accuracy": held["near_miss"]["accuracy"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
