"""Command-line interface: parse arguments and dispatch, nothing else.

Heavy imports (torch, transformer-lens) happen inside the commands so that
``bracketlens --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from bracketlens.errors import BracketLensError

if TYPE_CHECKING:
    from bracketlens.data.dataset import BracketDataset

DEFAULT_N = 10_000
DEFAULT_ANALYSIS_N = 5_000
DEFAULT_CIRCUIT_N = 10_000
DEFAULT_EXPLAIN_N = 10_000


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bracketlens`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except BracketLensError as e:
        print(f"bracketlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bracketlens: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bracketlens",
        description="Mechanistic interpretability of a balanced-bracket classifier.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("predict", help="P(balanced) of paren strings")
    p.add_argument("strings", nargs="+", help='paren strings, e.g. "(())" "())("')
    _add_weights(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy overall and per failure group")
    _add_weights(p)
    _add_data(p, DEFAULT_N)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("analyze", help="the whole analysis, as JSON findings")
    _add_weights(p)
    _add_data(p, DEFAULT_ANALYSIS_N)
    p.add_argument("--json", action="store_true", help="print the findings JSON (default: summary)")
    _add_attack_results(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="write the offline HTML report, PNGs and findings.json")
    _add_weights(p)
    _add_data(p, DEFAULT_ANALYSIS_N)
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    p.add_argument("--no-png", action="store_true", help="skip the PNG export")
    _add_attack_results(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("circuit", help="localise the circuit and measure how much it explains")
    _add_weights(p)
    _add_data(p, DEFAULT_CIRCUIT_N)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_circuit)

    p = sub.add_parser(
        "explain", help="which algorithm the model runs, by interchange interventions"
    )
    _add_weights(p)
    _add_data(p, DEFAULT_EXPLAIN_N)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("seeds", help="train several seeds and tabulate where the roles recur")
    p.add_argument("--models", type=int, default=3, help="how many seeds to train (0..K-1)")
    p.add_argument("--steps", type=int, default=None, help="steps per model (default 3000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("train", help="train a model from a seed and save it")
    p.add_argument("--out", default="model.safetensors", help="output .safetensors path")
    p.add_argument("--seed", type=int, default=0, help="random seed (integer)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: recipe)")
    p.add_argument("--reference", metavar="PATH", help="also evaluate on this JSON data set")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("attack", help="search for strings the model gets confidently wrong")
    _add_weights(p)
    p.add_argument("--budget", type=int, default=200_000, help="model evaluations (strings)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's random choices")
    p.add_argument("--top", type=int, default=10, help="strings shown of each label")
    p.add_argument("--json", action="store_true", help="print a JSON list, wrongest first")
    p.set_defaults(func=cmd_attack)
    return parser


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="checkpoint (.safetensors or course .pt); default: bundled",
    )


def _add_attack_results(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--attack", metavar="PATH", help="JSON from `bracketlens attack --json` to include"
    )


def load_attack_strings(path: str | None) -> list[str] | None:
    """The strings of a saved `bracketlens attack --json` list."""
    if path is None:
        return None
    from pathlib import Path

    try:
        records = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BracketLensError(f"attack results {path} do not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BracketLensError(f"attack results {path} are not valid JSON ({e})") from None
    ok = isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("string"), str) for r in records
    )
    if not ok:
        raise BracketLensError(
            f"{path}: expected the JSON list of {{'string', 'label', 'p_balanced'}} that "
            "`bracketlens attack --json` prints"
        )
    from bracketlens.data import tokenize

    strings = [r["string"] for r in records]
    tokenize(strings)  # validates characters and lengths, naming the first bad one
    return strings


def _add_data(p: argparse.ArgumentParser, default_n: int) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--data", metavar="PATH", help="JSON list of [string, is_balanced] pairs")
    group.add_argument(
        "--n", type=int, default=None, help=f"generate N strings (default {default_n})"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated strings")
    p.set_defaults(default_n=default_n)


def load_data(args: argparse.Namespace) -> BracketDataset:
    """The data set named by ``--data`` or generated by ``--n/--seed``."""
    from bracketlens.data import BracketDataset, evaluation_set

    if args.data is not None:
        return BracketDataset.from_json(args.data)
    n = args.default_n if args.n is None else args.n
    if n < 1:
        raise BracketLensError(f"--n must be a positive number of strings, got {n}")
    return evaluation_set(n, seed=args.seed)


def cmd_predict(args: argparse.Namespace) -> int:
    from bracketlens.data import is_balanced, tokenize
    from bracketlens.model import load_model, predict_proba

    tokens = tokenize(args.strings)  # validates before the model loads
    p = predict_proba(load_model(args.weights), tokens)
    rows = [
        {"string": s, "p_balanced": float(pb), "label": is_balanced(s)}
        for s, pb in zip(args.strings, p, strict=True)
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    from bracketlens.terminal import prediction_table

    prediction_table(rows)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bracketlens.model import evaluate, load_model

    data = load_data(args)
    model = load_model(args.weights)
    result = evaluate(model, data, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    from bracketlens.terminal import evaluation_table

    evaluation_table(result, data.description)
    return 0


def _run_analysis(args: argparse.Namespace):  # -> Findings
    from bracketlens.model import load_model
    from bracketlens.report import analyze
    from bracketlens.terminal import progress_steps

    data = load_data(args)
    attack = load_attack_strings(args.attack)
    model = load_model(args.weights)
    weights = args.weights or "bundled default"
    with progress_steps(enabled=sys.stderr.isatty()) as step:
        return analyze(model, data, weights=weights, progress=step, attack_strings=attack)


def cmd_analyze(args: argparse.Namespace) -> int:
    findings = _run_analysis(args)
    if args.json:
        print(json.dumps(findings.to_json(), indent=2))
        return 0
    from bracketlens.terminal import findings_summary

    findings_summary(findings)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bracketlens.report.write import check_report_dir, write_report

    check_report_dir(Path(args.out))  # fail before minutes of work
    findings = _run_analysis(args)
    out = write_report(findings, args.out, png=not args.no_png)
    from bracketlens.terminal import findings_summary

    findings_summary(findings)
    print(f"report written to {out / 'index.html'}")
    return 0


def cmd_circuit(args: argparse.Namespace) -> int:
    from bracketlens.model import load_model
    from bracketlens.verify.circuit import verdict_json, verify_circuit

    data = load_data(args)
    if len(data) < 40:
        raise BracketLensError("the circuit search needs at least 40 strings; use --n 10000")
    verdict = verify_circuit(load_model(args.weights), data, seed=args.seed)
    result = verdict_json(verdict)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from bracketlens.terminal import circuit_table

    circuit_table(result)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from bracketlens.algorithms import explain
    from bracketlens.model import load_model

    data = load_data(args)
    result = explain(load_model(args.weights), data, seed=args.seed).to_json()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from bracketlens.terminal import explanation_table

    explanation_table(result)
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from bracketlens.verify.seeds import seeds_json, short_recipe, train_and_localise

    if args.models < 1:
        raise BracketLensError(f"--models must be at least 1, got {args.models}")
    base = short_recipe() if args.steps is None else short_recipe(args.steps)  # validated
    say = (
        None
        if args.json
        else (lambda s: print(f"training and localising seed {s}...", file=sys.stderr))
    )
    result = seeds_json(train_and_localise(range(args.models), base=base, on_seed=say))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from bracketlens.terminal import seeds_table

    seeds_table(result)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bracketlens.data import BracketDataset
    from bracketlens.model.train import TrainConfig, train_to_file

    steps = {} if args.steps is None else {"steps": args.steps}
    cfg = TrainConfig(seed=args.seed, **steps)
    reference = None if args.reference is None else BracketDataset.from_json(args.reference)
    command = shlex.join(["bracketlens", *args.argv])
    result = train_to_file(
        cfg,
        args.out,
        force=args.force,
        progress=not args.quiet,
        reference=reference,
        command=command,
    )
    if not args.quiet:
        from bracketlens.terminal import training_summary

        training_summary(result.record, args.out)
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from bracketlens.adversarial import attack
    from bracketlens.model import load_model

    if args.budget < 1:
        raise BracketLensError(f"--budget must be a positive number of strings, got {args.budget}")
    if args.top < 1:
        raise BracketLensError(f"--top must be a positive number of strings, got {args.top}")
    model = load_model(args.weights)
    progress = not args.json and sys.stderr.isatty()
    result = attack(model, budget=args.budget, seed=args.seed, top=args.top, progress=progress)
    if args.json:
        print(result.to_json(args.top))
        return 0
    from bracketlens.terminal import attack_tables

    attack_tables(result, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
