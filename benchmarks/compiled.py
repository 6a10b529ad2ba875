"""The hand-built model against its targets, and its agreement with the course checkpoint.

Usage: ``python benchmarks/compiled.py [--max-length 18] [--n 100000] [--seed 2026]``

Prints one line per target (accuracy, number wrong, smallest |logit difference|,
time) and, when ``../shared/arena`` holds the course files, the strings of the
course data set on which the compiled model and the course checkpoint disagree.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bracketlens import BracketDataset, evaluation_set, load_model
from bracketlens.compiled import build_compiled
from bracketlens.compiled.check import Score, score_exhaustive, score_tokens
from bracketlens.data.generate import near_miss_set

ARENA = Path(__file__).resolve().parents[2] / "shared" / "arena"


def line(name: str, score: Score, seconds: float) -> dict[str, object]:
    row = {"target": name, **score.to_json(), "seconds": round(seconds, 1)}
    print(
        f"{name:<42} {score.n:>8,} strings  accuracy {100 * score.accuracy:.4f}%  "
        f"wrong {len(score.wrong)}  min |logit diff| {score.min_margin:.3f}  ({seconds:.1f} s)"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-length", type=int, default=18)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", metavar="PATH", help="also write the rows here")
    args = parser.parse_args()
    model = build_compiled()
    rows = []
    t = time.perf_counter()
    score = score_exhaustive(model, args.max_length)
    rows.append(line(f"every string, lengths 0..{args.max_length}", score, time.perf_counter() - t))
    for name, data in (
        (f"evaluation_set({args.n}, {args.seed})", evaluation_set(args.n, args.seed)),
        ("near_miss_set(10000, 2000003)", near_miss_set(10_000, 2_000_003)),
    ):
        t = time.perf_counter()
        rows.append(line(name, score_tokens(model, data.tokens), time.perf_counter() - t))
    print(f"smallest |logit diff| over all of these: {min(r['min_abs_logit_diff'] for r in rows)}")
    if (ARENA / "brackets_data.json").is_file():
        rows.append(agreement(model, ARENA))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def agreement(model: torch.nn.Module, arena: Path) -> dict[str, object]:
    """Where the compiled model and the course checkpoint disagree on the course's strings."""
    data = BracketDataset.from_json(arena / "brackets_data.json")
    course = load_model(arena / "brackets_model_state_dict.pt")
    with torch.no_grad():
        ours = torch.cat([model.class_logits(c).argmax(-1) for c in data.tokens.split(8192)])
        theirs = torch.cat([course.class_logits(c).argmax(-1) for c in data.tokens.split(8192)])
    differ = (ours != theirs).nonzero().flatten().tolist()
    strings = [data.strings[i] for i in differ]
    says = [(bool(data.labels[i]), int(ours[i]) == 1, int(theirs[i]) == 1) for i in differ]
    print(
        f"course data: compiled and course checkpoint agree on {len(data) - len(differ):,} of "
        f"{len(data):,}; they disagree on {len(differ)}:"
    )
    for s, (label, compiled, checkpoint) in zip(strings, says, strict=True):
        print(f"  {s!r}: balanced {label}; compiled says {compiled}, course says {checkpoint}")
    return {"target": "agreement with the course checkpoint", "disagree": strings}


if __name__ == "__main__":
    main()
