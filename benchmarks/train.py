"""Benchmark: retrain the bundled recipe from scratch; compare its accuracy with the sidecar's.

Usage: python benchmarks/train.py [--seed N] [--steps N] [--threads N]

By default this runs the recipe recorded in the bundled checkpoint's sidecar
(``bracketlens/weights/default.json``) and prints wall time and held-out accuracy beside
the sidecar's. The bundled checkpoint was trained at two threads; other thread counts and
CPUs round differently, so the weights differ in their last bits, while the held-out
accuracy agrees within ``TOLERANCE``. Exits 1 when it does not (for the bundled recipe).
Targets: the recipe trains in at most 10 minutes on 2 CPU cores, with at least 99.95% on
100,000 fresh strings of the evaluation distribution. The test suite guards the recipe's
first steps against a stored state (``tests/integration/recipe_prefix.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from bracketlens.model.checkpoint import bundled_weights_path, read_sidecar
from bracketlens.model.config import ModelConfig
from bracketlens.model.train import TrainConfig, train

TARGET_SECONDS = 600
TOLERANCE = 0.0005  # 0.05 percentage points of held-out accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: the sidecar's")
    parser.add_argument("--steps", type=int, default=None, help="default: the sidecar's")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    side = read_sidecar(bundled_weights_path())
    bundled = TrainConfig(**side["train_config"], model=ModelConfig.from_dict(side["config"]))
    changes = {k: v for k, v in (("seed", args.seed), ("steps", args.steps)) if v is not None}
    cfg = dataclasses.replace(bundled, **changes)
    start = time.perf_counter()
    result = train(cfg, progress=False)
    wall = time.perf_counter() - start
    held = result.record["held_out"]
    want = side["held_out"]
    report = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "bundled_recipe": cfg == bundled,
        "steps": cfg.steps,
        "train_seconds": result.record["train_seconds"],
        "wall_seconds_incl_eval": round(wall, 1),
        "ratio_to_10_min_target": round(result.record["train_seconds"] / TARGET_SECONDS, 3),
        "eval_accuracy": held["evaluation"]["accuracy"],
        "sidecar_eval_accuracy": want["evaluation"]["accuracy"],
        "near_miss_accuracy": held["near_miss"]["accuracy"],
        "sidecar_near_miss_accuracy": want["near_miss"]["accuracy"],
    }
    gap = abs(report["eval_accuracy"] - report["sidecar_eval_accuracy"])
    report["within_tolerance"] = gap <= TOLERANCE
    print(json.dumps(report, indent=2))
    return 0 if report["within_tolerance"] or cfg != bundled else 1


if __name__ == "__main__":
    sys.exit(main())
