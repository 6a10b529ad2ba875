"""Score every detector on models whose circuit is known: SIIT-planted circuits and the compiled model.

Usage:
    python benchmarks/ground_truth.py [--cache DIR] [--circuits 6] [--seed 0]
        [--steps STEPS] [--jobs 2] [--n 4000] [--reference-n 1000] [--explain-n 10000]
        [--no-explain | --explain-only] [--models NAMES] [--trained-only] [--json]

1. ``DIR/suite.json`` is drawn and written first (or reused): each circuit's
   high-level graph, its true nodes and its true edges, fixed before any model is
   trained or any detector runs. The true edges follow from the high-level graph by
   ``EDGE_RULE`` (:mod:`bracketlens.planted.circuits`): the edges that carry one of its
   variables. SIIT constrains nodes, not edges. The edges are scored as the rule
   derives them from the stored graphs; where the file's list differs (a file written
   under another rule), the output says so.
2. Each circuit is trained with strict interchange intervention training
   (``bracketlens.planted.siit``) unless ``DIR/<name>.safetensors`` exists; its
   record (time, accuracy, IIA at every planted node, every strict node's resample
   effect) goes to ``DIR/<name>.record.json``. ``--jobs`` trains that many at once,
   each in its own process on one thread. A model is accepted as ground truth with
   accuracy >= 99%, IIA >= 0.9 at every planted node and every strict node's effect
   within the stated bound; one that fails is kept in the table, flagged, and left
   out of the summary.
3. Every model, the compiled one included, is copied *without* its sidecar into a
   fresh folder and scored there (:mod:`ground_truth_scores`) with the settings a user
   gets: ``discover``'s EAP and EAP-IG on as many strings as ``discover`` takes by
   default, exact patching, ACDC and ``circuit``'s roles (on ``--reference-n``
   strings: exact patching runs each component-level edge alone), and ``explain``
   with its default search on its default number of strings. ``--jobs`` scores that
   many models at once, each on one thread.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from ground_truth_scores import explain_row, score_model, summary, table

from bracketlens import save_checkpoint
from bracketlens.cli.parser import DEFAULT_DISCOVER_N, DEFAULT_EXPLAIN_N
from bracketlens.compiled import build_compiled
from bracketlens.discovery.graph import Graph
from bracketlens.model.config import ModelConfig
from bracketlens.planted.circuits import (
    CircuitSpec,
    compiled_spec,
    draw_circuits,
    read_circuits,
    true_edge_names,
    write_circuits,
    written_edges,
)
from bracketlens.planted.siit import SIITConfig, accepted, train_circuit


def build_suite(
    cache: Path, count: int, seed: int, cfg: SIITConfig, jobs: int = 1, train: bool = True
) -> list[dict[str, object]]:
    """Train (or reuse) every circuit of the suite; each one's spec, path and record
    (without ``train``: only the circuits already trained)."""
    cache.mkdir(parents=True, exist_ok=True)
    suite_file = cache / "suite.json"
    if not suite_file.exists():
        write_circuits(draw_circuits(seed)[:count], suite_file)
    specs = read_circuits(suite_file)
    todo = [s for s in specs if not (cache / f"{s.name}.record.json").exists()]
    if not train:
        specs, todo = [s for s in specs if s not in todo], []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name in pool.map(train_one, todo, [cache] * len(todo), [cfg] * len(todo)):
            print(f"trained {name}", file=sys.stderr, flush=True)
    return [
        {
            "spec": s,
            "path": cache / f"{s.name}.safetensors",
            "record": json.loads((cache / f"{s.name}.record.json").read_text()),
        }
        for s in specs
    ]


def stale_edges(cache: Path, specs: list[CircuitSpec]) -> list[str]:
    """The circuits whose true edges in ``suite.json`` differ from the rule's."""
    written = written_edges(cache / "suite.json")
    graph = Graph.of(ModelConfig())
    return [s.name for s in specs if written.get(s.name) != true_edge_names(s, graph)]


def train_one(spec: CircuitSpec, cache: Path, cfg: SIITConfig) -> str:
    """Train one circuit on one thread and write its weights and record to ``cache``."""
    torch.set_num_threads(1)
    print(f"training {spec.name}", file=sys.stderr, flush=True)
    planted = train_circuit(spec, cfg)
    path = cache / f"{spec.name}.safetensors"
    save_checkpoint(planted.model, path, force=True)
    path.with_suffix(".json").unlink()  # the answer is kept apart from the weights
    (cache / f"{spec.name}.record.json").write_text(json.dumps(planted.record, indent=1))
    return spec.name


def score_one(job: tuple[Any, ...], n: int, explain_n: int, reference_n: int) -> dict[str, Any]:
    """One model's row, on one thread; ``n`` 0: explain's alone (``--explain-only``)."""
    torch.set_num_threads(1)
    if not n:
        return explain_row(*job, explain_n)
    return score_model(*job, n, explain_n, reference_n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", default="ground_truth_cache")
    parser.add_argument("--circuits", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=SIITConfig().steps)
    parser.add_argument("--jobs", type=int, default=1, help="circuits trained at once")
    parser.add_argument(
        "--n",
        type=int,
        default=DEFAULT_DISCOVER_N,
        help="strings EAP's and EAP-IG's pairs come from (default: discover's)",
    )
    parser.add_argument(
        "--reference-n",
        type=int,
        default=1000,
        help="strings the pairs of exact patching, ACDC and circuit come from",
    )
    parser.add_argument(
        "--explain-n", type=int, default=DEFAULT_EXPLAIN_N, help="strings explain sees"
    )
    parser.add_argument("--build-only", action="store_true", help="train, score nothing")
    parser.add_argument("--trained-only", action="store_true", help="score the trained ones")
    parser.add_argument("--models", help="comma-separated circuit names to score (default all)")
    parser.add_argument("--no-compiled", action="store_true", help="leave the compiled model out")
    parser.add_argument(
        "--no-explain", action="store_true", help="score every detector but explain"
    )
    parser.add_argument(
        "--explain-only", action="store_true", help="score explain alone (its recall)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.explain_only and args.no_explain:
        parser.error("--explain-only and --no-explain leave nothing to score")
    t = time.perf_counter()
    cfg = SIITConfig(steps=args.steps)
    suite = build_suite(
        Path(args.cache), args.circuits, args.seed, cfg, args.jobs, not args.trained_only
    )
    print(f"suite ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if args.build_only:
        return
    blind = Path(tempfile.mkdtemp(prefix="blind-"))
    jobs: list[tuple[Any, ...]] = []
    try:
        wanted = set(args.models.split(",")) if args.models else None
        for i, row in enumerate(suite):
            if wanted is not None and row["spec"].name not in wanted:  # type: ignore[attr-defined]
                continue
            copy = blind / f"model-{i}.safetensors"  # neither the name nor a sidecar tells
            shutil.copyfile(row["path"], copy)  # type: ignore[arg-type]
            ok, why = accepted(row["record"])  # type: ignore[arg-type]
            jobs.append((copy, row["spec"], "planted", ok, why, row["record"]))
        if not args.no_compiled:
            copy = blind / "model-c.safetensors"
            save_checkpoint(build_compiled(), copy)
            copy.with_suffix(".json").unlink()
            jobs.append((copy, compiled_spec(), "compiled", True, [], None))
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(
                pool.map(
                    score_one,
                    jobs,
                    [0 if args.explain_only else args.n] * len(jobs),
                    [0 if args.no_explain else args.explain_n] * len(jobs),
                    [args.reference_n] * len(jobs),
                )
            )
    finally:
        shutil.rmtree(blind)
    out = {"rows": rows, "summary": summary(rows)}
    stale = stale_edges(Path(args.cache), [r["spec"] for r in suite])  # type: ignore[misc]
    out["summary"]["suite_edges"] = (
        "as suite.json records them"
        if not stale
        else "derived from suite.json's high-level graphs by the rule; its recorded lists "
        f"follow another rule for {', '.join(stale)}"
    )
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(table(out))


if __name__ == "__main__":
    main()
