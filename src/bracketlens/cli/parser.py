"""The command line's parser: every subcommand, its flags and their checks."""

from __future__ import annotations

import argparse

from bracketlens import __version__
from bracketlens.cli.commands import (
    cmd_analyze,
    cmd_attack,
    cmd_circuit,
    cmd_compile,
    cmd_discover,
    cmd_evaluate,
    cmd_explain,
    cmd_predict,
    cmd_report,
    cmd_seeds,
    cmd_train,
)
from bracketlens.cli.support import RECIPE_HELP, Parser, n_strings_type, positive_int, seed_type
from bracketlens.limits import MAX_BUDGET, MAX_MODELS, MAX_SEED, MAX_STEPS, MAX_STRINGS
from bracketlens.plan import DEFAULT_CAUSAL_N

DEFAULT_N = 10_000
DEFAULT_ANALYSIS_N = 5_000
DEFAULT_CIRCUIT_N = 10_000
DEFAULT_EXPLAIN_N = 10_000
DEFAULT_DISCOVER_N = 4_000  # about 2,000 balanced strings, so 2,000 pairs


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
    _add_search(p)
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
    _add_search(p)
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


def _add_search(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--search",
        default="default",
        choices=["default", "thorough", "quick", "smoke"],
        help="how hard explain looks: default (the registered and the grammar's causal "
        "models, about 2 minutes on 2 cores), thorough (the default, its best models "
        "measured on four times the test pairs: a model near the 0.9 bar is not failed "
        "for want of pairs; about 2.5 minutes), quick (the registered models, lightly: "
        "seconds, and rarely a passing verdict) or smoke (the least that still gives a "
        "verdict, for tests)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="neither reuse nor keep explain's result, nor report's discover stage's (kept "
        "by default in $BRACKETLENS_CACHE_DIR, else $XDG_CACHE_HOME/bracketlens/explain, else "
        "~/.cache/bracketlens/explain, keyed by the weights, strings, seed and search)",
    )


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
