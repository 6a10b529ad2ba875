"""Benchmark: `discover`'s methods on many models, beside the exact node optimum.

Usage: python benchmarks/discover_models.py [--models bundled,course,compiled]
       [--seeds-dir DIR] [--methods eap,eap-ig,eap-ig-activations,exact]
       [--n 4000] [--exact-n 1000] [--jobs 1] [--out DIR] [--json]

Runs ``bracketlens discover --weights W --method M --json`` as a process for every
model and method, at position level with counterfactual pairs (the defaults), and
prints one row per (model, method): CPR, CMD, the smallest budget whose f reaches
0.95 on the half circuits are chosen on (as a share of the live edges), that
circuit's f on the other half, its components, and the method's gap to the node
optimum (the largest and the mean over circuit sizes). Then, per model, the node
optimum's best circuit, its smallest circuit with f >= 0.95, and the circuit of
EAP-IG (``discover``'s default; the first method where it did not run): its
components and its largest edges.

``--models`` names the bundled checkpoint (``bundled``), the course checkpoint
(``course``, from ``../shared/arena``), the hand-compiled model (``compiled``) or any
checkpoint path; ``--seeds-dir`` (repeatable) adds every ``*.safetensors`` in a folder. Exact
patching runs each live edge alone, so it gets its own, smaller ``--exact-n``.
``--jobs`` runs that many commands at once, each at one thread; ``--out`` keeps each
command's JSON (``MODEL.METHOD.json``) and reuses one that is there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from commands import thread_env  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT.parent / "shared" / "arena" / "brackets_model_state_dict.pt"
METHODS = ("eap", "eap-ig", "eap-ig-activations", "exact")
DEFAULT_METHOD = "eap-ig"
TOP_EDGES = 6  # the largest edges of each model's circuit, to say what it looks like


def model_paths(names: list[str], seeds_dirs: list[str]) -> dict[str, str | None]:
    """Display name -> ``--weights`` value (None: the bundled checkpoint)."""
    out: dict[str, str | None] = {}
    for name in names:
        if name == "bundled":
            out[name] = None
        elif name == "course":
            if not COURSE.exists():
                raise SystemExit(f"the course checkpoint is not at {COURSE}")
            out[name] = str(COURSE)
        elif name == "compiled":
            out[name] = "compiled"
        else:
            out[Path(name).stem] = name
    for folder in seeds_dirs:
        for path in sorted(Path(folder).glob("*.safetensors")):
            out[path.stem] = str(path)
    return out


def run(weights: str | None, method: str, n: int, cache: Path | None, key: str) -> dict[str, Any]:
    """``discover --json`` of one model and method, as a process at one thread."""
    if cache is not None and (cache / key).exists():
        return json.loads((cache / key).read_text())
    args = [] if weights is None else ["--weights", weights]
    command = [sys.executable, "-m", "bracketlens.cli", "discover", *args]
    command += ["--method", method, "--n", str(n), "--seed", "0", "--json"]
    done = subprocess.run(
        command, env=thread_env("1", dict(os.environ)), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    if cache is not None:
        (cache / key).write_text(done.stdout)
    return json.loads(done.stdout)


def row(model: str, out: dict[str, Any]) -> dict[str, Any]:
    """The table's fields of one ``discover --json`` result."""
    circuit, optimum = out["circuit"], out["optimum"]
    gaps = [r["gap"] for r in optimum["by_size"]] if optimum else []
    return {
        "model": model,
        "method": out["method"],
        "n_pairs": out["n_pairs"],
        "cpr": out["cpr"],
        "cmd": out["cmd"],
        "n_live_edges": out["n_live_edges"],
        "circuit_edges": None if circuit is None else circuit["n_edges"],
        "circuit_share": None if circuit is None else circuit["n_edges"] / out["n_live_edges"],
        "faithfulness_held_out": None if circuit is None else circuit["faithfulness_held_out"],
        "components": None if circuit is None else circuit["components"],
        "circuit_null_reason": out.get("circuit_null_reason") if circuit is None else None,
        "gap_max": max(gaps) if gaps else None,
        "gap_mean": sum(gaps) / len(gaps) if gaps else None,
        "optimum_best": optimum and optimum["best"]["components"],
        "optimum_smallest_at_095": optimum and optimum["smallest_at_095"],
        "largest_edges": [] if circuit is None else largest(circuit["edges"], TOP_EDGES),
    }


def largest(edges: list[dict[str, Any]], k: int) -> list[str]:
    """The ``k`` edges of largest absolute score, as ``sender -> receiver.input @ position``."""
    top = sorted(edges, key=lambda e: -abs(e["score"]))[:k]
    return [
        f"{e['sender']} -> {e['receiver']}"
        + ("" if e["input"] in ("mlp", "logits") else f".{e['input']}")
        + ("" if e["position"] is None else f" @{e['position']}")
        for e in top
    ]


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | method | pairs | CPR | CMD | smallest budget with f >= 0.95 | held-out f | "
        "gap to the node optimum (max / mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = (
            "none up to 50%"
            if r["circuit_edges"] is None
            else f"{r['circuit_edges']} of {r['n_live_edges']} ({r['circuit_share']:.1%})"
        )
        lines.append(
            f"| {r['model']} | {r['method']} | {r['n_pairs']} | {_num(r['cpr'], '.3f')} | "
            f"{_num(r['cmd'], '.3f')}"
            f" | {budget} | {_num(r['faithfulness_held_out'], '.3f')} | "
            f"{_num(r['gap_max'], '.3f')} / {_num(r['gap_mean'], '.3f')} |"
        )
    lines += ["", "| model | node optimum: best | smallest with f >= 0.95 | circuit's components "
              f"and {TOP_EDGES} largest edges |", "|---|---|---|---|"]  # fmt: skip
    described: dict[str, dict[str, Any]] = {}
    for r in rows:  # discover's default method where it ran, else the first
        if r["model"] not in described or r["method"] == DEFAULT_METHOD:
            described[r["model"]] = r
    for r in described.values():
        best = ", ".join(r["optimum_best"] or []) or "-"
        smallest = ", ".join(r["optimum_smallest_at_095"] or []) or "none"
        comps = ", ".join(c for c in r["components"] or [] if c not in ("embed", "logits"))
        edges = "; ".join(r["largest_edges"])
        lines.append(
            f"| {r['model']} | {best} | {smallest} | {r['method']}: {comps or '-'}; largest "
            f"edges {edges or '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bundled,course,compiled")
    parser.add_argument(
        "--seeds-dir", action="append", default=[], help="add every checkpoint in this folder"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=4000, help="strings (discover's default)")
    parser.add_argument("--exact-n", type=int, default=1000, help="strings for exact patching")
    parser.add_argument("--jobs", type=int, default=1, help="commands at once, one thread each")
    parser.add_argument("--out", default=None, help="keep (and reuse) each command's JSON here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models = model_paths([m for m in args.models.split(",") if m], args.seeds_dir)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    cache = Path(args.out) if args.out else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    jobs = [(name, w, m) for name, w in models.items() for m in methods]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outs = list(
            pool.map(
                lambda job: run(
                    job[1],
                    job[2],
                    args.exact_n if job[2] == "exact" else args.n,
                    cache,
                    f"{job[0]}.{job[2]}.json",
                ),
                jobs,
            )
        )
    rows = [row(name, out) for (name, _, _), out in zip(jobs, outs, strict=True)]
    print(json.dumps({"rows": rows}, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
