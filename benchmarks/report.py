"""Benchmark: `bracketlens report` on the bundled model with the default sample.

Usage: python benchmarks/report.py [--n 5000] [--no-png]

Times the analysis and the rendering separately, in this process, and prints
the ratio of the total to its target, 60 seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bracketlens import evaluation_set, load_model
from bracketlens.pipeline import analyze
from bracketlens.report.write import write_report

TARGET_SECONDS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--no-png", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    model = load_model()
    data = evaluation_set(args.n, seed=0)
    loaded = time.perf_counter()
    findings = analyze(model, data)
    analysed = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_report(findings, Path(tmp) / "report", png=not args.no_png)
    done = time.perf_counter()
    total = done - start
    print(
        json.dumps(
            {
                "torch_threads": torch.get_num_threads(),
                "n": args.n,
                "load_seconds": round(loaded - start, 2),
                "analyze_seconds": round(analysed - loaded, 2),
                "render_seconds": round(done - analysed, 2),
                "total_seconds": round(total, 2),
                "ratio_to_60s_target": round(total / TARGET_SECONDS, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
