"""Command-line interface: parse arguments and dispatch, nothing else.

Heavy imports (torch, transformer-lens) happen inside the commands so that
``bracketlens --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bracketlens import __version__
from bracketlens.cli_support import (
    RECIPE_HELP,
    Parser,
    Terminated,
    n_strings_type,
    one_line,
    positive_int,
    seed_type,
    show_warning,
    sigterm_as_interrupt,
    strict_json_stdout,
)
from bracketlens.errors import BracketLensError
from bracketlens.jsonout import strict_dumps
from bracketlens.limits import MAX_BUDGET, MAX_MODELS, MAX_SEED, MAX_STEPS, MAX_STRINGS
from bracketlens.plan import COMMAND_STAGES, DEFAULT_CAUSAL_N, Stage

if TYPE_CHECKING:
    from bracketlens.data.dataset import BracketDataset
    from bracketlens.model.transformer import BracketTransformer

__all__ = ["build_parser", "main"]

DEFAULT_N = 10_000
DEFAULT_ANALYSIS_N = 5_000
DEFAULT_CIRCUIT_N = 10_000
DEFAULT_EXPLAIN_N = 10_000
SEEDS_FAILED = 3  # the exit code of a sweep some of whose seeds failed
DEFAULT_DISCOVER_N = 4_000  # about 2,000 balanced strings, so 2,000 pairs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bracketlens`` console script.

    Exit codes: 0 done; 2 a usage mistake (one line on stderr); 1 an internal
    error (one line, or the traceback with ``--debug``); 3 ``seeds`` finished but
    some seeds failed (their rows say why); 130 interrupted (Ctrl-C); 143
    terminated (SIGTERM).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = warnings.showwarning
    if "--debug" not in argv:
        warnings.showwarning = show_warning
    try:
        with sigterm_as_interrupt():
            return _guarded(argv)
    finally:
        warnings.showwarning = previous


def _guarded(argv: list[str]) -> int:
    """Parse and run; user mistakes exit 2, anything unexpected exits 1 (the guard)."""
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        with strict_json_stdout(bool(getattr(args, "json", False))):
            return int(args.func(args) or 0)
    except BracketLensError as e:
        print(f"bracketlens: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Terminated:  # SIGTERM: the cleanups of Ctrl-C have run on the way here
        print("bracketlens: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("bracketlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to tell anyone
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # the guard: no traceback unless asked for
        if "--debug" in argv:
            traceback.print_exc()
        else:
            print(
                f"bracketlens: internal error: {type(e).__name__}: {one_line(e)[:300]}; "
                "run with --debug for the traceback",
                file=sys.stderr,
            )
        return 1


def _print_json(obj: object, *, indent: int | None = None) -> None:
    """Print ``obj`` as strict JSON: non-finite numbers become null with a reason."""
    print(strict_dumps(obj, indent=indent))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bracketlens",
        description="Mechanistic interpretability of a balanced-bracket classifier.",
    )
    parser.add_argument("--version", action="version", version=f"bracketlens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    _run_on_device(p)

    p = sub.add_parser("analyze", help="the whole analysis, as JSON findings")
    _add_weights(p)
    _add_data(p, DEFAULT_ANALYSIS_N)
    p.add_argument("--json", action="store_true", help="print the findings JSON (default: summary)")
    _add_causal(p)
    _add_attack_results(p)
    p.set_defaults(func=cmd_analyze)
    _run_on_device(p)

    p = sub.add_parser("report", help="write the offline HTML report, PNGs and findings.json")
    _add_weights(p)
    _add_data(p, DEFAULT_ANALYSIS_N)
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    p.add_argument("--no-png", action="store_true", help="skip the PNG export")
    _add_causal(p)
    _add_attack_results(p)
    p.set_defaults(func=cmd_report)
    _run_on_device(p)

    p = sub.add_parser("circuit", help="localise the circuit and measure how much it explains")
    _add_weights(p)
    _add_data(p, DEFAULT_CIRCUIT_N)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_causal(p)
    p.set_defaults(func=cmd_circuit)
    _run_on_device(p)

    p = sub.add_parser(
        "explain", help="which algorithm the model runs, by interchange interventions"
    )
    _add_weights(p)
    _add_data(p, DEFAULT_EXPLAIN_N)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_explain)
    _run_on_device(p)

    _add_discover(sub)
    _add_seeds(sub)

    p = sub.add_parser("train", help="train a model from a seed and save it")
    p.add_argument("--out", default="model.safetensors", help="output .safetensors path")
    p.add_argument("--seed", type=seed_type, default=0, help=f"random seed (0..{MAX_SEED})")
    p.add_argument(
        "--steps",
        type=positive_int(MAX_STEPS),
        default=None,
        help="optimizer steps (default: recipe)",
    )
    p.add_argument("--reference", metavar="PATH", help="also evaluate on this JSON data set")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    _add_device(p, "cpu", "device to train on (cpu, cuda, cuda:N); evaluation runs on the CPU")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compile", help="write the hand-built model of the course's algorithm")
    p.add_argument("--out", default="compiled.safetensors", help="output .safetensors path")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("attack", help="search for strings the model gets confidently wrong")
    _add_weights(p)
    p.add_argument(
        "--budget",
        type=positive_int(MAX_BUDGET),
        default=200_000,
        help="model evaluations (strings)",
    )
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the search's random choices")
    p.add_argument(
        "--top", type=positive_int(MAX_BUDGET), default=10, help="strings shown of each label"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, wrongest first")
    p.set_defaults(func=cmd_attack)
    return parser


def _add_discover(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "discover", help="find the circuit without a template: edge scores and faithfulness"
    )
    _add_weights(p)
    _add_data(p, DEFAULT_DISCOVER_N)
    p.add_argument(
        "--method",
        default="eap-ig",
        choices=["eap-ig", "eap-ig-activations", "eap", "exact"],
        help="edge scores: EAP-IG (interpolating the inputs, or every sender's output), "
        "EAP, or patching each edge alone (default eap-ig)",
    )
    p.add_argument(
        "--level",
        default="position",
        choices=["component", "position"],
        help="edges per position, or summed over positions (default position)",
    )
    p.add_argument(
        "--ablation",
        default="counterfactual",
        choices=["counterfactual", "mean", "resample"],
        help="what a patched edge carries (default counterfactual: the edited string's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_discover)
    _run_on_device(p)


def _add_seeds(sub: argparse._SubParsersAction) -> None:
    recipes = "; ".join(f"{name}: {text}" for name, text in RECIPE_HELP.items())
    p = sub.add_parser(
        "seeds",
        help="train many seeds (in-process or on Ray), localise and explain each, count",
        description="Each seed is trained, localised and explained once; its checkpoint and "
        "JSON row land in --out, and a rerun reuses every finished seed of the same recipe.",
    )
    p.add_argument(
        "--models", type=positive_int(MAX_MODELS), default=3, help="how many seeds to run (K)"
    )
    p.add_argument("--seed-start", type=seed_type, default=0, help="first seed; seeds are S..S+K-1")
    p.add_argument("--recipe", default="short", choices=list(RECIPE_HELP), help=recipes)
    p.add_argument(
        "--steps",
        type=positive_int(MAX_STEPS),
        default=None,
        help="training steps (default: recipe's)",
    )
    p.add_argument(
        "--workers",
        type=positive_int(MAX_MODELS),
        default=1,
        help="1: in this process; N>1: a local Ray of N CPUs",
    )
    p.add_argument("--address", help="connect to this existing Ray cluster (e.g. ray://host:10001)")
    p.add_argument("--out", default="sweep", help="folder of per-seed results (default ./sweep)")
    p.add_argument("--report", metavar="DIR", help="also write the universality page there")
    _add_device(p, None, "device to train on; default: cuda on a Ray cluster with GPUs, else cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_seeds)


def _add_device(p: argparse.ArgumentParser, default: str | None, text: str) -> None:
    p.add_argument("--device", default=default, help=text)


def _run_on_device(p: argparse.ArgumentParser) -> None:
    """Give an analysis command --device: it runs whole under ``model.device.on_device``.

    Off the CPU, the model and data are then created on the device; that path has
    not been run on a GPU yet.
    """
    _add_device(p, "cpu", "device to run on (cpu, cuda, cuda:N)")
    command = p.get_default("func")

    def on_device_command(args: argparse.Namespace) -> int:
        from bracketlens.model.device import on_device

        with on_device(args.device):
            return int(command(args) or 0)

    p.set_defaults(func=on_device_command)


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="checkpoint (.safetensors or course .pt), or 'compiled' for the hand-built "
        "model (a file named compiled is read only as ./compiled); default: bundled",
    )
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="load a checkpoint even if it holds NaN or infinite weights",
    )


def load_weights(args: argparse.Namespace) -> BracketTransformer:
    """The model named by ``--weights`` (and ``--allow-nonfinite``) of any subcommand."""
    from bracketlens.weights.resolve import load_model

    return load_model(args.weights, allow_nonfinite=getattr(args, "allow_nonfinite", False))


def _add_causal(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--causal-n",
        type=positive_int(MAX_STRINGS),
        default=DEFAULT_CAUSAL_N,
        metavar="N",
        help="held-out strings the interventions run on "
        f"(default {DEFAULT_CAUSAL_N:,}; --seed also seeds the fit/held-out split)",
    )


def _add_attack_results(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--attack", metavar="PATH", help="JSON from `bracketlens attack --json` to include"
    )


def load_attack_strings(path: str | None) -> list[str] | None:
    """The strings of a saved `bracketlens attack --json` list."""
    if path is None:
        return None
    from bracketlens.data.files import read_json_list

    expected = "the JSON list `bracketlens attack --json` prints"
    records = read_json_list(path, what="attack results file", expected=expected)
    ok = isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("string"), str) for r in records
    )
    if not ok:
        raise BracketLensError(
            f"{path}: expected the JSON list of {{'string', 'label', 'p_balanced'}} that "
            "`bracketlens attack --json` prints"
        )
    from bracketlens.data import tokenize

    strings = [r["string"] for r in records if isinstance(r, dict)]
    tokenize(strings)  # validates characters and lengths, naming the first bad one
    return strings


def _add_data(p: argparse.ArgumentParser, default_n: int) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--data", metavar="PATH", help="JSON list of [string, is_balanced] pairs")
    group.add_argument(
        "--n",
        type=n_strings_type,
        default=None,
        help=f"generate N strings, 1..{MAX_STRINGS:,} (default {default_n:,})",
    )
    p.add_argument(
        "--seed",
        type=seed_type,
        default=0,
        help=f"seed of the generated strings and of the fit/held-out split (0..{MAX_SEED})",
    )
    p.set_defaults(default_n=default_n)


def load_data(args: argparse.Namespace) -> BracketDataset:
    """The data set named by ``--data`` or generated by ``--n/--seed``."""
    from bracketlens.data import BracketDataset, evaluation_set

    if args.data is not None:
        return BracketDataset.from_json(args.data)
    n = args.default_n if args.n is None else args.n
    return evaluation_set(n, seed=args.seed)


def cmd_predict(args: argparse.Namespace) -> int:
    from bracketlens.data import is_balanced, tokenize
    from bracketlens.model import predict_proba

    tokens = tokenize(args.strings)  # validates before the model loads
    p = predict_proba(load_weights(args), tokens)
    rows = [
        {"string": s, "p_balanced": float(pb), "label": is_balanced(s)}
        for s, pb in zip(args.strings, p, strict=True)
    ]
    if args.json:
        _print_json(rows)
        return 0
    from bracketlens.terminal import prediction_table

    prediction_table(rows)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bracketlens.model import evaluate

    data = load_data(args)
    model = load_weights(args)
    result = evaluate(model, data, progress=not args.json and sys.stderr.isatty())
    if args.json:
        _print_json(result.to_dict())
        return 0
    from bracketlens.terminal import evaluation_table

    evaluation_table(result, data.description)
    return 0


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        print(f"bracketlens: warning: {line}", file=sys.stderr)


def _run_analysis(
    args: argparse.Namespace,
    command: str,
    purpose: str = "the analysis",
    min_n: int = 20,
) -> tuple[Any, list[str]]:  # (Analysis, warnings)
    from bracketlens.data.sample import check_sample
    from bracketlens.model.checks import check_circuit_model
    from bracketlens.pipeline import run
    from bracketlens.terminal import progress_steps

    stages = COMMAND_STAGES[command]
    if Stage.EXPLAIN in stages:  # say so before minutes of work, not after them
        from bracketlens.algorithms.explain import MIN_STRINGS

        min_n = max(min_n, MIN_STRINGS)
    data = load_data(args)
    warnings = check_sample(data, purpose=purpose, minimum=min_n, split_seed=args.seed)
    attack = load_attack_strings(getattr(args, "attack", None))
    model = load_weights(args)
    check_circuit_model(model, purpose)
    with progress_steps(enabled=sys.stderr.isatty()) as step:
        analysis = run(
            model,
            data,
            seed=args.seed,
            causal_n=args.causal_n,
            stages=stages,
            weights=weights_label(args.weights),
            attack_strings=attack,
            progress=step,
        )
    _warn(warnings)  # with the results they qualify: a run that fails prints its error alone
    return analysis, warnings


def weights_label(weights: str | None) -> str:
    """How the report's header names the weights; says so when the model is hand-built."""
    from bracketlens.weights.resolve import is_hand_built

    if weights is None:
        return "bundled default"
    if is_hand_built(weights):
        return f"{weights} (hand-built from the course's algorithm, not trained)"
    return weights


def cmd_analyze(args: argparse.Namespace) -> int:
    findings, warnings = _run_analysis(args, "analyze")
    if args.json:
        _print_json(findings.to_json() | ({"warnings": warnings} if warnings else {}), indent=2)
        return 0
    from bracketlens.terminal import findings_summary

    findings_summary(findings)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bracketlens.report.write import check_report_dir, write_report

    check_report_dir(args.out)  # fail before minutes of work
    findings, warnings = _run_analysis(args, "report")
    out = write_report(findings, args.out, png=not args.no_png, warnings=warnings)
    from bracketlens.terminal import findings_summary

    findings_summary(findings)
    print(f"report written to {out / 'index.html'}")
    return 0


def cmd_circuit(args: argparse.Namespace) -> int:
    analysis, warnings = _run_analysis(args, "circuit", purpose="the circuit search", min_n=40)
    result = analysis.to_json()
    if args.json:
        _print_json(result | ({"warnings": warnings} if warnings else {}), indent=2)
        return 0
    from bracketlens.terminal import circuit_table

    circuit_table(result)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from bracketlens.algorithms import explain

    data = load_data(args)
    model = load_weights(args)
    result = explain(model, data, seed=args.seed).to_json()
    if args.json:
        _print_json(result, indent=2)
        return 0
    from bracketlens.terminal import explanation_table

    explanation_table(result)
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from bracketlens.discovery.discover import discover

    data = load_data(args)
    model = load_weights(args)
    result = discover(
        model, data, method=args.method, level=args.level, ablation=args.ablation, seed=args.seed
    )
    if args.json:
        _print_json(result.to_json(), indent=2)
        return 0
    from bracketlens.discovery.text import discovery_text

    print(discovery_text(result))
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bracketlens.sweeps import Sweep, get_recipe, run_sweep

    recipe = get_recipe(args.recipe, args.steps)  # validates --steps
    if args.report is not None:
        from bracketlens.report.universality import check_page_dir

        check_page_dir(Path(args.report))  # fail before hours of training
    if args.device is not None and args.workers == 1 and args.address is None:
        from bracketlens.model.device import resolve_device

        resolve_device(args.device)  # on a cluster, the workers' devices count, not ours
    seeds = range(args.seed_start, args.seed_start + args.models)
    debug = "--debug" in args.argv
    sweep = Sweep(seeds, recipe, Path(args.out), args.workers, args.address, args.device, debug)
    swept = run_sweep(sweep, on_row=None if args.json else _say_seed)
    result = swept.to_json()
    if args.report is not None:
        from bracketlens.report.universality import write_page

        page = write_page(result, args.report)
    if args.json:
        _print_json(result, indent=2)
        return _failed_seeds(swept.failed, args.out)
    from bracketlens.terminal import seeds_table

    seeds_table(result)
    print(f"rows and checkpoints in {args.out}/, table {args.out}/seeds.parquet")
    if args.report is not None:
        print(f"universality page written to {page}")
    return _failed_seeds(swept.failed, args.out)


def _failed_seeds(failed: list[int], out: str) -> int:
    """Exit code 3 and one line when some seeds failed (every other seed is saved)."""
    if not failed:
        return 0
    shown = ", ".join(map(str, failed[:10])) + (" ..." if len(failed) > 10 else "")
    print(
        f"bracketlens: {len(failed)} seed(s) failed ({shown}); each one's row in {out}/rows "
        "says why, and a rerun retries them",
        file=sys.stderr,
    )
    return SEEDS_FAILED


def _say_seed(row: dict[str, object]) -> None:
    """One line on stderr as each seed finishes."""
    if row["error"] is not None:
        print(f"seed {row['seed']}: failed: {row['error']}", file=sys.stderr)
        return
    roles = row["roles"]
    assert isinstance(roles, dict)
    where = ", ".join(f"{k.split('_')[0]} {v['location'] or 'not found'}" for k, v in roles.items())
    print(
        f"seed {row['seed']}: accuracy {row['accuracy']:.4f}; {where} "
        + ("(reused)" if row["reused"] else f"({row['seconds']} s)"),
        file=sys.stderr,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from bracketlens.data import BracketDataset
    from bracketlens.model.checkpoint import check_output_path
    from bracketlens.model.device import resolve_device
    from bracketlens.model.train import TrainConfig, train_to_file

    steps = {} if args.steps is None else {"steps": args.steps}
    cfg = TrainConfig(seed=args.seed, **steps)
    check_output_path(args.out, force=args.force)  # checkpoint and sidecar, before any work
    device = resolve_device(args.device)
    reference = None if args.reference is None else BracketDataset.from_json(args.reference)
    command = shlex.join(["bracketlens", *args.argv])
    result = train_to_file(
        cfg,
        args.out,
        force=args.force,
        progress=not args.quiet,
        reference=reference,
        command=command,
        device=device,
    )
    if not args.quiet:
        from bracketlens.terminal import training_summary

        training_summary(result.record, args.out)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from bracketlens.compiled import DESCRIPTION, ROLES, build_compiled
    from bracketlens.model.checkpoint import check_output_path, save_checkpoint

    out = check_output_path(args.out, force=args.force)  # before any work
    record = {
        "hand_built": True,
        "description": DESCRIPTION,
        "roles": ROLES,
        "command": shlex.join(["bracketlens", *args.argv]),
    }
    save_checkpoint(build_compiled(), out, record, force=args.force)
    print(f"hand-built model written to {out} (roles in {out.with_suffix('.json')})")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from bracketlens.adversarial import attack

    model = load_weights(args)
    progress = not args.json and sys.stderr.isatty()
    result = attack(model, budget=args.budget, seed=args.seed, top=args.top, progress=progress)
    if args.json:
        print(result.to_json(args.top))  # strict: main checks every --json output
        return 0
    from bracketlens.terminal import attack_tables

    attack_tables(result, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
