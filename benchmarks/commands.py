"""Benchmark: the commands users run, as processes, against `bracketlens evaluate` on the same data.

Usage: python benchmarks/commands.py [--only analyze-5000,analyze-100000,report,circuit]
       [--course-dir ../shared/arena] [--repeat 3] [--threads 1|default]
       python benchmarks/commands.py --only report-stored [--threads 1|default]

Each case runs the baseline (``bracketlens evaluate`` on the same data: start-up
plus one forward pass, the floor a user sees) and then the command, each as its
own process with OMP_NUM_THREADS=1 (``--threads default``: as torch chooses, one
thread per core), in turn ``--repeat`` times (default 3), and
prints the medians of wall time, CPU time (user + sys) and peak RSS of both (and
each run's CPU time), with the ratios of the medians and their targets:

- ``analyze`` on the first 5,000 course strings: time <= 2x, peak RSS <= 1.5x;
- ``analyze`` on all 100,000 course strings: time <= 3x, peak RSS <= 2 GB;
- ``report --no-png --no-cache`` on the bundled model, 5,000 strings: time <= 3x (and
  the rendering floor: writing the page with its figures, timed in-process);
- ``report-stored``: the same ``report`` with explain's result store (in a temporary
  folder): report with the store empty (it searches and runs the discover stage, and
  stores both), then evaluate and report again (it reuses both) in turn ``--repeat``
  times (medians; the ratios use evaluate's median); in a second empty store,
  ``explain --n 5000`` and then report (it reuses explain's result and runs the discover
  stage), once each;
- ``circuit`` at 10,000 strings: time <= 3x.

On a machine shared with other work, wall times are noisy; CPU times less so.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COURSE = ROOT.parent / "shared" / "arena"


def timed(args: list[str], threads: str = "1", store: str | None = None) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of ``bracketlens ARGS`` as a process.

    CPU time and peak RSS come from ``wait4``: the CPU time includes a child the command
    started and reaped (``report`` runs ``discover``'s stage and half of ``explain`` in them), and the
    peak RSS is the larger of the two processes', not their sum. ``store`` is explain's
    result store (``BRACKETLENS_CACHE_DIR``); by default a fresh empty folder.
    """
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as empty:
        env["BRACKETLENS_CACHE_DIR"] = store or empty
        return _timed(args, threads, env)


def thread_env(threads: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` set for ``threads``: one thread ("1"), or torch's default (the variables unset)."""
    if threads == "1":
        return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {k: v for k, v in env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def _timed(args: list[str], threads: str, env: dict[str, str]) -> dict[str, float]:
    env = thread_env(threads, env)
    command = [sys.executable, "-m", "bracketlens.cli", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(
            f"{' '.join(args)} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def case(
    name: str,
    baseline: list[str],
    command: list[str],
    targets: dict[str, float],
    repeat: int,
    threads: str,
) -> dict:
    """Baseline and command run in turn ``repeat`` times; medians of each, and the ratios of
    the medians (on a shared machine one run's time varies by 10-20%)."""
    runs = [(timed(baseline, threads), timed(command, threads)) for _ in range(repeat)]
    base, ours = (_median([run[i] for run in runs]) for i in (0, 1))
    ratios = {
        "wall": round(ours["wall_s"] / base["wall_s"], 2),
        "cpu": round(ours["cpu_s"] / base["cpu_s"], 2),
        "peak_rss": round(ours["peak_rss_mib"] / base["peak_rss_mib"], 2),
    }
    return {
        "case": name,
        "baseline": {"command": " ".join(baseline), **base},
        "command": {"command": " ".join(command), **ours},
        "ratios": ratios,
        "targets": targets,
    }


def _median(samples: list[dict[str, float]]) -> dict[str, object]:
    out: dict[str, object] = {k: float(np.median([x[k] for x in samples])) for k in samples[0]}
    out["cpu_s_each"] = [x["cpu_s"] for x in samples]
    return out


def render_floor(n: int) -> dict[str, float]:
    """Seconds to write the report page (no PNGs) for an analysis already made."""
    from bracketlens import evaluation_set, load_model
    from bracketlens.pipeline import analyze
    from bracketlens.report.write import write_report

    findings = analyze(load_model(), evaluation_set(n, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_report(findings, Path(tmp) / "report", png=False)
        return {"render_seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="analyze-5000,analyze-100000,report,circuit")
    parser.add_argument("--course-dir", type=Path, default=DEFAULT_COURSE)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each process (medians)")
    parser.add_argument(
        "--threads",
        choices=("1", "default"),
        default="1",
        help="OMP_NUM_THREADS=1 in every process (default), or torch's own choice (all cores)",
    )
    args = parser.parse_args()
    chosen = args.only.split(",")
    weights = str(args.course_dir / "brackets_model_state_dict.pt")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "course_5000.json"
        records = json.loads((args.course_dir / "brackets_data.json").read_text())
        first.write_text(json.dumps(records[:5000]))
        every = str(args.course_dir / "brackets_data.json")
        for size, path, target in (("5000", str(first), 2.0), ("100000", every, 3.0)):
            if f"analyze-{size}" in chosen:
                course = ["--weights", weights, "--data", path]
                rss = {"peak_rss_ratio": 1.5} if size == "5000" else {"peak_rss_mib": 2048}
                out.append(
                    case(
                        f"analyze, {size} course strings",
                        ["evaluate", *course, "--json"],
                        ["analyze", *course, "--json"],
                        {"time_ratio": target, **rss},
                        args.repeat,
                        args.threads,
                    )
                )
        if "report" in chosen:
            report = case(
                "report --no-png, bundled model, 5,000 strings",
                ["evaluate", "--n", "5000", "--json"],
                [
                    "report",
                    "--n",
                    "5000",
                    "--no-png",
                    "--no-cache",
                    "--out",
                    str(Path(tmp) / "report"),
                ],
                {"time_ratio": 3.0},
                args.repeat,
                args.threads,
            )
            out.append({**report, "rendering_floor": render_floor(5000)})
        if "report-stored" in chosen:
            out.append(stored_case(Path(tmp), args.threads, args.repeat))
        if "circuit" in chosen:
            out.append(
                case(
                    "circuit, bundled model, 10,000 strings",
                    ["evaluate", "--n", "10000", "--json"],
                    ["circuit", "--n", "10000", "--json"],
                    {"time_ratio": 3.0},
                    args.repeat,
                    args.threads,
                )
            )
    print(json.dumps({"machine": machine(), "threads": args.threads, "cases": out}, indent=2))


def stored_case(tmp: Path, threads: str, repeat: int) -> dict:
    """``report`` with explain's result store: empty, then holding its own result (run in
    turn with evaluate ``repeat`` times: medians), then holding ``explain``'s (once each)."""
    report = ["report", "--n", "5000", "--no-png", "--out", str(tmp / "report-stored")]
    evaluate = ["evaluate", "--n", "5000", "--json"]
    first, second = tmp / "store-report", tmp / "store-explain"
    cold = timed(report, threads, str(first))
    pairs = [(timed(evaluate, threads), timed(report, threads, str(first))) for _ in range(repeat)]
    base, warm = (_median([pair[i] for pair in pairs]) for i in (0, 1))
    explained = timed(["explain", "--n", "5000", "--json"], threads, str(second))
    after = timed(report, threads, str(second))
    runs = {"report, empty store": cold, "report, its own result stored": warm,
            "explain --n 5000": explained, "report after explain": after}  # fmt: skip
    return {
        "case": "report --no-png with explain's result store, bundled model, 5,000 strings",
        "baseline": {"command": " ".join(evaluate), **base},
        "runs": runs,
        "wall_ratios": {name: round(r["wall_s"] / base["wall_s"], 2) for name, r in runs.items()},
        "rerun_wall_ratio_each": [round(r["wall_s"] / b["wall_s"], 2) for b, r in pairs],
        "stored_entry_bytes": [p.stat().st_size for p in sorted(second.glob("*.json"))],
        "targets": {"time_ratio": 3.0},
    }


def machine() -> dict[str, object]:
    """The CPU the figures were measured on: ratios move between processors (a forward
    pass is matrix products, much of the rest Python and small kernels)."""
    model, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    wide = sorted(f for f in flags if f in {"avx2", "avx512f", "amx_tile"})
    return {"cpu": model, "cores": os.cpu_count(), "vector_units": wide}


if __name__ == "__main__":
    main()
