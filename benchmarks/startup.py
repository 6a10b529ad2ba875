"""Benchmark: how fast `bracketlens --help` and `--version` answer, as a user runs them.

Usage: python benchmarks/startup.py [--repeat 5]

Each command runs as its own process (start-up included), best of ``--repeat``.
Baselines measured in the same run: a bare ``python -c pass`` (the floor), and
``import bracketlens.model`` (torch and transformer-lens: what ``--help`` would
pay if ``bracketlens/__init__.py`` imported the model eagerly).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "import bracketlens.model (eager)": [sys.executable, "-c", "import bracketlens.model"],
    "bracketlens --help": [sys.executable, "-m", "bracketlens.cli", "--help"],
    "bracketlens --version": [sys.executable, "-m", "bracketlens.cli", "--version"],
    "bracketlens report --help": [sys.executable, "-m", "bracketlens.cli", "report", "--help"],
}


def best_of(argv: list[str], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``argv``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds = {name: best_of(argv, args.repeat) for name, argv in COMMANDS.items()}
    floor, old = seconds["python -c pass (floor)"], seconds["import bracketlens.model (eager)"]
    for name, value in seconds.items():
        print(
            f"{name:40s} {value:6.3f} s  {value / floor:5.1f}x floor  {old / value:5.1f}x faster than eager"
        )


if __name__ == "__main__":
    main()
