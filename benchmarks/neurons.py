"""Benchmark: peak memory of the per-neuron projection, full tensor vs projecting W_out first.

Usage: python benchmarks/neurons.py [--n 5000 20000]

Each variant runs in its own subprocess (peak RSS; tracemalloc does not see
torch's allocations): (a) the floor, loading the model and the data only; (b)
``out_by_neuron`` over all positions, ``[batch, seq, neuron, d_model]``, then projected
(the course's way); (c) ``out_by_neuron_in_direction``, which keeps ``[batch, neuron]``.
Prints peak RSS above the floor and the ratio (b)/(c).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import resource, sys, time, torch
from bracketlens import evaluation_set, load_model
from bracketlens.attribution.neurons import out_by_neuron, out_by_neuron_in_direction
n, variant = int(sys.argv[1]), sys.argv[2]
model, data = load_model(), evaluation_set(n, seed=0)
direction = torch.randn(56, generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
if variant == "full":
    out = (out_by_neuron(model, data.tokens, 1) @ direction)[:, 1]
elif variant == "low_memory":
    out = out_by_neuron_in_direction(model, data.tokens, 1, direction, 1)
seconds = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, seconds)
"""


def peak_mib(n: int, variant: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), variant], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) / 1024, float(out[1])  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 20000])
    args = parser.parse_args()
    rows = []
    for n in args.n:
        floor, _ = peak_mib(n, "floor")
        full, t_full = peak_mib(n, "full")
        low, t_low = peak_mib(n, "low_memory")
        rows.append(
            {
                "n": n,
                "floor_peak_mib": round(floor),
                "full_above_floor_mib": round(full - floor),
                "low_memory_above_floor_mib": round(low - floor),
                "ratio_full_over_low_memory": round((full - floor) / max(low - floor, 1.0), 1),
                "seconds_full": round(t_full, 2),
                "seconds_low_memory": round(t_low, 2),
            }
        )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
