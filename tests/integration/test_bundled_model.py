"""The bundled default checkpoint: it ships, loads, records how it was made, and is accurate.

Its recipe is guarded by its first steps against a stored state (``recipe_prefix.py``); the
whole retrain, with the held-out accuracy against the sidecar's, is ``benchmarks/train.py``.
"""

import pytest
import torch

from bracketlens import evaluate, evaluation_set, load_model
from bracketlens.model import read_sidecar
from bracketlens.model.checkpoint import bundled_weights_path
from bracketlens.model.train import TrainConfig
from tests.integration.recipe_prefix import (
    LOSS_RTOL,
    LOSSES,
    PARAM_RTOL,
    REPEAT_STEP,
    STORED_STEP,
    bundled_recipe,
    bundled_recipe_json,
    read_state,
    relative_drift,
    skip_unless_made_here,
    stored_part,
    train_prefix,
)


def test_bundled_checkpoint_and_sidecar():
    path = bundled_weights_path()
    assert path.is_file()
    side = read_sidecar(path)
    assert side["command"].startswith("bracketlens train --seed 0")
    assert side["seed"] == 0
    assert side["steps"] == TrainConfig().steps
    assert side["config"]["n_layers"] == 3 and side["config"]["d_model"] == 56
    assert "training_set(n=" in side["data_recipe"]
    held = side["held_out"]
    assert held["evaluation"]["n"] == 100_000
    assert held["evaluation"]["accuracy"] >= 0.9995  # the recipe's target: 99.95%
    assert held["reference"]["accuracy"] >= 0.999  # the course's 100,000 strings
    # near misses: at least as good as the course checkpoint on the same strings (0.9904)
    assert held["near_miss"]["accuracy"] >= 0.9904


def test_bundled_model_on_fresh_strings(bundled_model):
    result = evaluate(bundled_model, evaluation_set(5000, seed=12345))
    assert result.accuracy >= 0.999


def test_load_model_defaults_to_the_bundle(bundled_model):
    assert load_model().state_dict()["unembed.W_U"].equal(bundled_model.W_U)


def test_sidecar_recipe_is_the_train_command_default():
    # the recipe the stored prefix pins is what `bracketlens train --seed 0` runs
    assert bundled_recipe() == TrainConfig(seed=0)


@pytest.mark.slow(minutes=1)
def test_bundled_recipe_first_steps_are_reproducible_and_match_the_stored_state():
    first, again = train_prefix(), train_prefix(REPEAT_STEP)
    for name, tensor in again.model.named_parameters():
        assert torch.equal(tensor, first.kept[REPEAT_STEP][name]), name
    assert again.losses == first.losses[:REPEAT_STEP]
    stored, meta = read_state()
    assert meta["recipe"] == bundled_recipe_json(), (
        "the bundled recipe changed: regenerate the stored state (see recipe_prefix.py)"
    )
    skip_unless_made_here(meta)
    got = stored_part(first)
    assert got.keys() == stored.keys()
    torch.testing.assert_close(got.pop(LOSSES), stored.pop(LOSSES), rtol=LOSS_RTOL, atol=0)
    drift = relative_drift(got, stored)
    assert drift <= PARAM_RTOL, f"parameters at step {STORED_STEP} moved {drift:.2e}"
