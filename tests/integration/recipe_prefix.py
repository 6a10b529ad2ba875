"""The bundled recipe's first steps, and the stored weights they reach at one thread.

``test_bundled_model.py`` trains the first :data:`STORED_STEP` steps of the recipe in the
bundled checkpoint's sidecar, and its first :data:`REPEAT_STEP` steps a second time, which
must give the same parameters bit for bit. It compares the parameters at
:data:`STORED_STEP`, and the losses up to it, with ``recipe_prefix.safetensors``, stored
beside this file. The whole
retrain, with its held-out accuracy against the sidecar's, is ``benchmarks/train.py``.

Regenerate the stored state after a deliberate change to the recipe (data, initialisation,
sampling, loss, optimiser or schedule), from the repository root::

    PYTHONPATH=src python -m tests.integration.recipe_prefix --regenerate

It trains at one thread and records the torch version it ran under; the test skips, saying
why, under any other torch release.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from bracketlens.model.checkpoint import bundled_weights_path, read_sidecar
from bracketlens.model.config import ModelConfig
from bracketlens.model.device import one_thread
from bracketlens.model.train import Fitted, TrainConfig, fit

STATE = Path(__file__).with_name("recipe_prefix.safetensors")
# Steps trained a second time, at one thread, and required to give identical weights.
REPEAT_STEP = 20
# The step whose parameters (and the losses up to it) are stored. Measured with torch 2.13
# on this recipe: two threads instead of one move the parameters at step 50 by 6.6e-6 of
# their norm and the losses by at most 1.6e-6 (relative); a learning rate 0.1% higher
# moves them by 4.5e-5 and 2.8e-4. By step 100 the two-thread run has drifted 4.5e-4, as
# far as the changed learning rate (7.5e-4): later steps cannot be compared across
# machines with any tolerance that still tells a changed recipe. A weight decay 10% higher
# moves step 50 by only 8.8e-6; the stored recipe, compared exactly, catches such a change
# of the config, and the tolerance a change of the code that trains it.
STORED_STEP = 50
PARAM_RTOL = 2e-5  # of the parameters' norm, over all of them
LOSS_RTOL = 2e-5  # of each step's loss
LOSSES = "losses"  # not a parameter name: those all contain a dot


def bundled_recipe() -> TrainConfig:
    """The training config recorded in the bundled checkpoint's sidecar."""
    side = read_sidecar(bundled_weights_path())
    return TrainConfig(**side["train_config"], model=ModelConfig.from_dict(side["config"]))


def bundled_recipe_json() -> str:
    """The sidecar's training and model config, as stored with the prefix state."""
    side = read_sidecar(bundled_weights_path())
    return json.dumps(
        {"train_config": side["train_config"], "config": side["config"]}, sort_keys=True
    )


def torch_release() -> str:
    """The installed torch's version without its build tag (``2.13.0`` for ``2.13.0+cpu``)."""
    return torch.__version__.split("+")[0]


def skip_unless_made_here(meta: dict[str, str]) -> None:
    """Skip, saying why, when a stored state was made under another torch release."""
    if meta["torch"] != torch_release():
        pytest.skip(
            f"the stored state was made with torch {meta['torch']}, this is torch "
            f"{torch_release()}: kernels of another release round differently"
        )


def relative_drift(got: dict[str, Tensor], stored: dict[str, Tensor]) -> float:
    """How far ``got`` lies from ``stored``, over all tensors, as a share of their norm."""
    assert got.keys() == stored.keys()
    drift = torch.cat([(got[k] - stored[k]).flatten() for k in stored]).norm()
    return float(drift / torch.cat([v.flatten() for v in stored.values()]).norm())


def train_prefix(steps: int = STORED_STEP) -> Fitted:
    """The first ``steps`` steps of the bundled recipe, at one thread.

    The parameters after :data:`REPEAT_STEP` and :data:`STORED_STEP` steps are kept,
    where the run reaches them.
    """
    keep = [k for k in (REPEAT_STEP, STORED_STEP) if k <= steps]
    with one_thread():
        return fit(bundled_recipe(), steps=steps, keep=keep)


def stored_part(fitted: Fitted) -> dict[str, Tensor]:
    """What the stored state holds of a run: parameters at the stored step, losses up to it."""
    losses = torch.tensor(fitted.losses[:STORED_STEP], dtype=torch.float64)
    return fitted.kept[STORED_STEP] | {LOSSES: losses}


def read_state() -> tuple[dict[str, Tensor], dict[str, str]]:
    """The stored parameters and losses, and their metadata (torch release, steps, recipe)."""
    with safe_open(str(STATE), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def regenerate() -> Path:
    """Train the prefix at one thread and store its part, with what it was made under."""
    meta = {
        "torch": torch_release(),
        "step": str(STORED_STEP),
        "threads": "1",
        "machine": platform.machine(),
        "recipe": bundled_recipe_json(),
    }
    save_file(stored_part(train_prefix()), str(STATE), metadata=meta)
    return STATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--regenerate", action="store_true", help=f"train and overwrite {STATE.name}"
    )
    args = parser.parse_args()
    if not args.regenerate:
        parser.error("nothing to do: pass --regenerate to retrain and store the prefix state")
    print(f"wrote {regenerate()} (torch {torch_release()}, step {STORED_STEP}, one thread)")


if __name__ == "__main__":
    main()
