"""Score our detectors on models whose answer is known: planted-circuit models and the compiled one.

Usage:
    python benchmarks/ground_truth.py [--cache DIR] [--models 6] [--seed 0]
        [--steps STEPS] [--n 2000] [--jobs 1]

1. The suite file ``DIR/suite.json`` is drawn and written first (or reused), so the
   placements are fixed before any model is trained or any detector runs.
2. Each placement is trained with interchange intervention training
   (``bracketlens.planted``) unless ``DIR/<name>.safetensors`` exists; the record
   (time, accuracy, IIA at every head and position) goes to ``DIR/<name>.record.json``.
   ``--jobs`` trains that many placements at once, each in its own process on one
   thread (each model's training is seeded, so the result does not depend on it).
3. Every model, the compiled one included, is copied *without* its sidecar into a
   fresh folder, and ``circuit`` and ``explain`` run on the copy. ``explain`` looks
   where a variable may be planted (one head's output in layer 0 or 1, one position)
   and names a location only when its IIA passes its verdict threshold; on the
   compiled model it searches everywhere and is printed, not scored.
4. One row per model, then precision and recall of roles (circuit) and of
   locations (explain).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from bracketlens import evaluation_set, load_model, save_checkpoint
from bracketlens.algorithms import Search, explain
from bracketlens.algorithms.result import THRESHOLD
from bracketlens.compiled import ROLES, build_compiled
from bracketlens.pipeline import run
from bracketlens.plan import COMMAND_STAGES
from bracketlens.planted import (
    IITConfig,
    Placement,
    draw_suite,
    plantable_search,
    read_suite,
    train_planted,
)
from bracketlens.planted import write_suite as write_suite_file

PLANTED_ACCURACY = 0.95
MODEL = "elevation_and_negative"
ROLE_KEYS = {"total_elevation": "elevation_head", "negative": "negative_head"}


def build_suite(
    cache: Path, models: int, seed: int, cfg: IITConfig, jobs: int = 1
) -> list[dict[str, object]]:
    """Train (or reuse) every placement of the suite; returns each model's path and truth."""
    cache.mkdir(parents=True, exist_ok=True)
    suite_file = cache / "suite.json"
    if not suite_file.exists():
        write_suite_file(draw_suite(models, seed), suite_file)
    placements = read_suite(suite_file)
    todo = [p for p in placements if not (cache / f"{p.name}.safetensors").exists()]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name in pool.map(train_one, todo, [cache] * len(todo), [cfg] * len(todo)):
            print(f"trained {name}", flush=True)
    return [
        {
            "placement": p,
            "path": cache / f"{p.name}.safetensors",
            "record": json.loads((cache / f"{p.name}.record.json").read_text()),
        }
        for p in placements
    ]


def train_one(p: Placement, cache: Path, cfg: IITConfig) -> str:
    """Train one placement on one thread and write its weights and record to ``cache``."""
    torch.set_num_threads(1)
    print(f"training {p.name}: {p.variable} in {p.label} at position {p.position}", flush=True)
    planted = train_planted(p, cfg)
    path = cache / f"{p.name}.safetensors"
    save_checkpoint(planted.model, path, force=True)
    path.with_suffix(".json").unlink()  # the answer is kept apart from the weights
    (cache / f"{p.name}.record.json").write_text(json.dumps(planted.record, indent=2))
    return p.name


def truth_of(p: Placement) -> dict[str, object]:
    return {ROLE_KEYS[p.variable]: f"{p.layer}.{p.head}"}


COMPILED_TRUTH = {
    "tally_head": ROLES["tally_head"],
    "read_position": str(ROLES["read_position"]),  # as circuit's JSON writes it
    "elevation_head": ROLES["elevation_head"],
    "negative_head": ROLES["negative_head"],
    "start_close_component": None,
}


def run_circuit(path: Path, n: int) -> dict[str, object]:
    """Where ``circuit`` puts each role: ``"0.0"``, ``"1"``, ``"head 1.0"``, or None."""
    model = load_model(path)
    found = run(
        model, evaluation_set(n, seed=0), seed=0, stages=COMMAND_STAGES["circuit"]
    ).to_json()
    localisation = found["localisation"]
    assert isinstance(localisation, dict)
    return {role: localisation[role]["location"] for role in COMPILED_TRUTH}


#: explain's names for the planted variables
EXPLAIN_NAMES = {"total_elevation": "elevation", "negative": "negative"}
#: where a planted variable may sit: one head's output in layer 0 or 1, at one position
PLANTABLE = plantable_search()


def run_explain(path: Path, n: int, search: Search | None) -> dict[str, str]:
    """Where ``explain`` puts each variable of the balance model: ``{"elevation": "0.1@2"}``."""
    model = load_model(path)
    result = explain(model, evaluation_set(n, seed=0), seed=0, models=[MODEL], search=search)
    out = {}
    for a in result.variables:
        site, positions = a.location.site, ",".join(map(str, a.location.positions))
        head = site.label if site.head is None else f"{site.layer}.{site.head}"
        out[a.variable] = f"{head}@{positions}"
        out[a.variable + "_iia"] = f"{a.iia.value:.2f}"
    return out


def score(truth: dict[str, object], found: dict[str, object]) -> tuple[int, int, int]:
    """(correct, named, planted) over the roles in ``truth``.

    A role the truth says is absent (None) counts as named-and-wrong if the detector
    names anything for it; a planted role counts as correct only at the right place.
    """
    correct = named = planted = 0
    for role, where in truth.items():
        got = found.get(role)
        named += got is not None
        planted += where is not None
        correct += where is not None and got == where
    return correct, named, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", default="ground_truth_cache")
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=IITConfig().steps)
    parser.add_argument("--n", type=int, default=2000, help="strings each detector sees")
    parser.add_argument("--jobs", type=int, default=1, help="placements trained at once")
    args = parser.parse_args()
    t = time.perf_counter()
    cfg = IITConfig(steps=args.steps)
    suite = build_suite(Path(args.cache), args.models, args.seed, cfg, args.jobs)
    print(f"suite ready in {time.perf_counter() - t:.1f} s")
    blind = Path(tempfile.mkdtemp(prefix="blind-"))
    try:
        table = [detect(row, blind, args.n) for row in suite]
        table.append(detect_compiled(blind, args.n))
    finally:
        shutil.rmtree(blind)
    report(table)


def detect(row: dict[str, object], blind: Path, n: int) -> dict[str, object]:
    p = row["placement"]
    assert isinstance(p, Placement)
    copy = blind / f"model-{p.seed}.safetensors"  # neither the name nor a sidecar tells
    shutil.copyfile(row["path"], copy)  # type: ignore[arg-type]
    iia = row["record"]["iia"]  # type: ignore[index]
    here = f"{p.layer}.{p.head}@{p.position}"
    # the other places a variable may be planted (layers 0-1): a later head that copies
    # the variable to position 0 carries it too, and is no rival location
    plantable = {k: v for k, v in iia.items() if int(k.split(".")[0]) in (0, 1)}
    best_other = max((v, k) for k, v in plantable.items() if k != here)
    found = run_circuit(copy, n)
    accuracy = row["record"]["accuracy"]  # type: ignore[index]
    # a planting failed when the model cannot classify or the variable is not where planted
    planted_ok = accuracy >= PLANTED_ACCURACY and iia[here] > best_other[0]
    return {
        "model": p.name + ("" if planted_ok else " (planting FAILED)"),
        "planted": f"{p.variable} in {p.label} at position {p.position}",
        "truth": truth_of(p),
        "circuit": {k: found[k] for k in COMPILED_TRUTH},
        "explain_truth": {EXPLAIN_NAMES[p.variable]: here},
        "explain": run_explain(copy, n, PLANTABLE),
        "iia": f"{iia[here]:.2f} vs {best_other[0]:.2f} ({best_other[1]})",
        "accuracy": accuracy,
    }


def detect_compiled(blind: Path, n: int) -> dict[str, object]:
    copy = blind / "model-c.safetensors"
    save_checkpoint(build_compiled(), copy)
    copy.with_suffix(".json").unlink()
    found = run_circuit(copy, n)
    return {
        "model": "compiled",
        "planted": "tally 0.0, read 1, elevation 2.0, negative 2.1, no start-close",
        "truth": COMPILED_TRUTH,
        "circuit": {k: found[k] for k in COMPILED_TRUTH},
        "explain_truth": {},  # printed, not scored: its variables sit in the residual stream
        "explain": run_explain(copy, n, None),
        "iia": "-",
        "accuracy": 1.0,
    }


def report(table: list[dict[str, object]]) -> None:
    totals, explain_totals = [0, 0, 0], [0, 0, 0]
    print(
        f"{'model':<28} {'planted':<52} {'accuracy':>8}  {'IIA here vs best in layers 0-1':<26} found"
    )
    for row in table:
        truth, found = row["truth"], row["circuit"]
        assert isinstance(truth, dict) and isinstance(found, dict)
        c, named, planted = score(truth, found)
        totals = [a + b for a, b in zip(totals, (c, named, planted), strict=True)]
        verdicts = []
        for role, where in truth.items():
            got = found.get(role)
            verdict = "found" if got == where and where is not None else "missed"
            if where is None:
                verdict = "absent, not named" if got is None else f"FALSE ({got})"
            elif got is not None and got != where:
                verdict = f"FALSE ({got}; missed {where})"
            verdicts.append(f"{role}={verdict}")
        print(
            f"{row['model']:<28} {row['planted']:<52} {row['accuracy']:>8.3f}  "
            f"{row['iia']:<26} {'; '.join(verdicts)}"
        )
        other = {k: v for k, v in found.items() if k not in truth}
        print(f"{'':<28} circuit also says: {other}")
        ex, ex_truth = row["explain"], row["explain_truth"]
        assert isinstance(ex, dict) and isinstance(ex_truth, dict)
        # explain names a location only where its IIA passes the verdict threshold
        named_by_explain = {
            k: v for k, v in ex.items() if k in ex_truth and float(ex[k + "_iia"]) >= THRESHOLD
        }
        c, named, planted = score(ex_truth, named_by_explain)
        explain_totals = [a + b for a, b in zip(explain_totals, (c, named, planted), strict=True)]
        print(f"{'':<28} explain: {json.dumps(ex)}")
    for name, (correct, named, planted) in (("circuit", totals), ("explain", explain_totals)):
        precision = correct / named if named else float("nan")
        recall = correct / planted if planted else float("nan")
        print(
            f"{name}: precision {precision:.2f} ({correct}/{named} named at the planted place), "
            f"recall {recall:.2f} ({correct}/{planted} planted found)"
        )


if __name__ == "__main__":
    main()
