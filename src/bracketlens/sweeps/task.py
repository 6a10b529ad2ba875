"""The per-seed task of a sweep: train one seed, localise its roles, explain it.

The task runs the same way in-process and in a Ray worker: torch at exactly one
thread, nothing written to disk (the driver writes what it returns), so that a
seed's row does not depend on where it ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set
from bracketlens.localisation import Localisation
from bracketlens.model.device import one_thread
from bracketlens.model.train import train
from bracketlens.model.transformer import BracketTransformer
from bracketlens.sweeps.recipes import Recipe

SCHEMA_VERSION = 2  # 2: a row records its checkpoint's SHA-256 (checkpoint_sha256)
ROLES = ("elevation_head", "negative_head", "read_position", "tally_head", "start_close_component")
ANALYSIS_SEED_OFFSET = 10_000  # the analysis sample of seed s is evaluation_set(n, 10_000 + s)


@dataclass(frozen=True)
class SeedResult:
    """What one task hands back: the row, and the weights when training finished."""

    row: dict[str, Any]
    state: dict[str, Tensor] | None


def localise_model(model: BracketTransformer, data: BracketDataset) -> Localisation:
    """The sweep's localisation step: the analysis pipeline's localisation stages."""
    from bracketlens.pipeline import localise

    return localise(model, data)


def explain_model(
    model: BracketTransformer,
    data: BracketDataset,
    seed: int,
    search: str = "default",
    split: bool = True,
) -> dict[str, Any]:
    """``explain``'s JSON for this model (an error inside it is the task's, recorded in the row);
    ``split``: its search in two processes where there are two cores (the same result)."""
    from bracketlens.algorithms import Search, explain

    found = explain(model, data, seed=seed, search=Search.named(search), split=split)
    result: dict[str, Any] = found.to_json()
    return result


def run_seed(seed: int, recipe: Recipe, device: str = "cpu", split: bool = True) -> SeedResult:
    """Train ``seed`` with ``recipe``, localise and explain it; errors become the row's.

    ``split``: explain's search in two processes (False where seeds run in parallel already).
    """
    start = time.perf_counter()
    row = base_row(seed, recipe, device)
    state = None
    try:
        with one_thread():
            result = train(replace(recipe.train, seed=seed), progress=False, device=device)
            model = result.model
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            row |= _measure(model, result.record, seed, recipe, split)
    except Exception as e:  # one seed's failure must not end the sweep; the row says why
        row["error"] = f"{type(e).__name__}: {e}"
    row["seconds"] = round(time.perf_counter() - start, 2)
    return SeedResult(row, state)


def base_row(seed: int, recipe: Recipe, device: str) -> dict[str, Any]:
    """The identifying fields of a seed's row, with every measured field null."""
    from bracketlens import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "seed": seed,
        "recipe": recipe.name,
        "recipe_hash": recipe.hash,
        "version": __version__,
        "device": device,
        "steps": recipe.train.steps,
        "accuracy": None,
        "near_miss_accuracy": None,
        "final_loss": None,
        "roles": None,
        "verdict": None,
        "iia": None,
        "variables": None,
        "seconds": None,
        "reused": False,
        "error": None,
    }


def _measure(
    model: BracketTransformer, record: dict[str, Any], seed: int, recipe: Recipe, split: bool
) -> dict[str, Any]:
    """Accuracy from the training record, then localisation and explanation on CPU."""
    model = model.cpu()  # the analysis code is CPU code; training alone uses --device
    data = evaluation_set(recipe.n_analysis, seed=ANALYSIS_SEED_OFFSET + seed)
    found = localise_model(model, data)
    explanation = explain_model(model, data, seed, recipe.search, split)
    held_out = record["held_out"]
    return {
        "accuracy": held_out["evaluation"]["accuracy"],
        "near_miss_accuracy": held_out["near_miss"]["accuracy"],
        "final_loss": record["final_loss"],
        "roles": {
            name: {
                "location": getattr(found, name).text,
                "confidence": round(getattr(found, name).confidence, 6),
            }
            for name in ROLES
        },
        **verdict_fields(explanation),
    }


def verdict_fields(explanation: dict[str, Any]) -> dict[str, Any]:
    """The row's ``verdict``, ``iia``, ``passing``, ``combined``, ``closest`` and
    ``variables`` from ``explain``'s JSON."""
    best = explanation["best_model"]
    models = explanation["models"]
    chosen = [m for m in models if m["name"] == best] or sorted(models, key=lambda m: -m["iia"])
    passing = explanation.get("passing")
    return {
        "verdict": best,
        "passing": list(passing) if passing is not None else ([] if best == "none" else [best]),
        "combined": explanation.get("combined"),
        "closest": _closest(explanation.get("closest")),
        # with no model explaining the seed ("none"), the best model's IIA says how close it came
        "iia": chosen[0]["iia"] if chosen else None,
        "variables": [
            {
                "name": v["name"],
                "where": variable_location(v),
                "iia": v["iia"],
            }
            for v in explanation["variables"]
        ],
    }


def _closest(closest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The closest model and each guard it fails (variable, guard, value, threshold)."""
    if not closest:
        return None
    keep = ("variable", "guard", "value", "threshold", "kinds", "groups")
    failing = [{k: f.get(k) for k in keep} for f in closest.get("failing") or []]
    return {"model": closest.get("model"), "failing": failing}


def variable_location(variable: dict[str, Any]) -> str:
    """A short label of where a variable was aligned, e.g. ``blocks.0.hook_resid_post @1``."""
    head = "" if variable.get("head") is None else f" head {variable['head']}"
    positions = ",".join(str(p) for p in variable["positions"])
    dim = f" dim {variable['dim']}" if variable.get("dim") else ""
    return f"{variable['hook']}{head} @{positions}{dim}"
