"""A planted model stored beside the tests, and the planting recipe's first steps.

``test_planted_recovery.py`` runs ``explain`` on :data:`MODEL`, a model with ``negative``
planted in head 1.1 at position 2 by :data:`RECIPE` (the suite's ``planted-1``, seed 1),
instead of training it (minutes at one thread). The recipe that made it is guarded by
its first steps: :data:`PREFIX_RECIPE` trained twice at one thread must give identical
weights, which must match the ones stored with the model within a tolerance.

Regenerate both after a deliberate change to the planting recipe (losses, sampling,
initialisation, optimiser or schedule), from the repository root::

    PYTHONPATH=src python -m tests.integration.planted_fixture --regenerate

It trains at one thread (a few minutes) and records the torch version it ran under;
the prefix comparison skips, saying why, under any other torch release.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from bracketlens.model.device import one_thread
from bracketlens.model.transformer import BracketTransformer
from bracketlens.planted import IITConfig, Placement, train_planted
from tests.integration.recipe_prefix import torch_release

STATE = Path(__file__).with_name("planted_negative.safetensors")
#: the negative check in head 1.1 at position 2 (the suite's planted-1, seed 1)
PLACEMENT = Placement("slow-tier", "negative", 1, 1, 2, seed=1)
HERE = "1.1@2"
RECIPE = IITConfig(steps=600, n_eval=2_000)
# The first steps, as a recipe of their own (its schedule spans these steps). Measured
# with torch 2.13, as a share of the parameters' norm after 40 steps: two threads instead
# of one move them by 9.1e-5; a learning rate 0.1% higher by 1.1e-2, an interchange
# weight 1% higher by 1.5e-2, a probe weight 1% higher by 1.8e-2.
PREFIX_RECIPE = IITConfig(steps=40, n_eval=200)
PARAM_RTOL = 1e-3  # of the parameters' norm, over all of them
MODEL, PREFIX = "model.", "prefix."


def train_prefix(cfg: IITConfig = PREFIX_RECIPE) -> dict[str, Tensor]:
    """The parameters :data:`PREFIX_RECIPE` reaches at one thread."""
    with one_thread():
        planted = train_planted(PLACEMENT, cfg)
    return {k: v.detach().clone() for k, v in planted.model.state_dict().items()}


def read_state() -> tuple[BracketTransformer, dict[str, Tensor], dict[str, str]]:
    """The stored planted model (in eval mode), the stored prefix parameters, the metadata."""
    with safe_open(str(STATE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = dict(f.metadata())
    model = BracketTransformer()
    weights = {k.removeprefix(MODEL): v for k, v in tensors.items() if k.startswith(MODEL)}
    model.load_state_dict(weights)
    model.eval()
    model.requires_grad_(False)
    prefix = {k.removeprefix(PREFIX): v for k, v in tensors.items() if k.startswith(PREFIX)}
    return model, prefix, meta


def recipe_json() -> str:
    """The placement and both recipes, as stored with the state."""
    return json.dumps(
        {
            "placement": PLACEMENT.to_json(),
            "recipe": asdict(RECIPE),
            "prefix": asdict(PREFIX_RECIPE),
        },
        sort_keys=True,
    )


def regenerate() -> tuple[Path, dict[str, object]]:
    """Train the planted model and the prefix at one thread; store both and the record."""
    with one_thread():
        planted = train_planted(PLACEMENT, RECIPE)
    tensors = {MODEL + k: v.contiguous() for k, v in planted.model.state_dict().items()}
    tensors |= {PREFIX + k: v.contiguous() for k, v in train_prefix().items()}
    meta = {
        "torch": torch_release(),
        "threads": "1",
        "machine": platform.machine(),
        "recipe": recipe_json(),
        "record": json.dumps(planted.record, sort_keys=True),
    }
    save_file(tensors, str(STATE), metadata=meta)
    return STATE, planted.record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--regenerate", action="store_true", help=f"train and overwrite {STATE.name}"
    )
    args = parser.parse_args()
    if not args.regenerate:
        parser.error("nothing to do: pass --regenerate to retrain and store the planted model")
    path, record = regenerate()
    print(f"wrote {path} (torch {torch_release()}, one thread)")
    print(json.dumps({k: record[k] for k in ("accuracy", "train_seconds")}))
    print(f"IIA at {HERE}: {record['iia'][HERE]}")  # type: ignore[index]


if __name__ == "__main__":
    main()
