import pytest
import torch

from bracketlens import BracketLensError
from bracketlens.model import read_sidecar
from bracketlens.model.train import TrainConfig, _lr_factor, fit, train, train_to_file
from bracketlens.weights.resolve import load_model

TINY = {
    "n_train": 3000,
    "steps": 80,
    "batch_size": 64,
    "warmup": 10,
    "n_eval": 500,
    "n_near_miss": 200,
}


def test_tiny_run_lowers_loss_and_is_bit_reproducible():
    losses_a: list[float] = []
    a = train(
        TrainConfig(seed=3, **TINY), progress=False, on_step=lambda _, loss: losses_a.append(loss)
    )
    b = train(TrainConfig(seed=3, **TINY), progress=False)
    assert sum(losses_a[-20:]) / 20 < 0.9 * sum(losses_a[:20]) / 20
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    # another seed: other weights from the first steps on
    c = fit(TrainConfig(seed=4, **TINY), steps=5)
    assert not torch.equal(fit(TrainConfig(seed=3, **TINY), steps=5).model.W_U, c.model.W_U)
    held = a.record["held_out"]
    assert held["evaluation"]["n"] == 500 and held["near_miss"]["n"] == 200


def test_train_to_file_records_the_run(tmp_path):
    out = tmp_path / "m.safetensors"
    train_to_file(TrainConfig(seed=1, **TINY), out, progress=False, command="bracketlens train")
    side = read_sidecar(out)
    assert side["seed"] == 1 and side["steps"] == 80
    assert side["command"] == "bracketlens train"
    assert "training_set(n=3000, seed=1)" in side["data_recipe"]
    load_model(out)


def test_existing_output_is_refused_before_training(tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(BracketLensError, match="exists"):
        train_to_file(TrainConfig(**TINY), out, progress=False)
    assert out.read_bytes() == b"keep me"


def test_crash_mid_training_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "m.safetensors"

    def explode(step: int, loss: float) -> None:
        if step == 5:
            raise RuntimeError("simulated crash")

    import bracketlens.model.train as train_module

    real_train = train_module.train
    monkeypatch.setattr(
        train_module, "train", lambda cfg, **kw: real_train(cfg, **kw, on_step=explode)
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_to_file(TrainConfig(**TINY), out, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [{"seed": "1"}, {"seed": 1.5}, {"steps": 0}, {"batch_size": -1}])
def test_bad_config(bad):
    with pytest.raises(BracketLensError):
        TrainConfig(**bad)


def test_fit_stopped_early_is_the_longer_run_at_that_step():
    cfg = TrainConfig(seed=2, **TINY)
    longer = fit(cfg, steps=60, keep=[30])
    shorter = fit(cfg, steps=30)
    assert shorter.losses == longer.losses[:30]
    for name, tensor in shorter.model.named_parameters():
        assert torch.equal(longer.kept[30][name], tensor), name
    assert not torch.equal(longer.kept[30]["unembed.W_U"], longer.model.W_U)


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 151}, {"steps": 20, "keep": [21]}])
def test_fit_refuses_steps_outside_the_recipe(bad):
    with pytest.raises(BracketLensError, match="must lie in"):
        fit(TrainConfig(**TINY), **bad)


def test_schedule_warms_up_then_decays_to_five_percent_of_the_peak():
    cfg = TrainConfig()
    factors = [_lr_factor(s, cfg) for s in range(cfg.steps)]
    assert factors[0] == pytest.approx(1 / cfg.warmup, rel=1e-12)
    assert factors[cfg.warmup - 1] == pytest.approx(1.0, rel=1e-12)
    assert factors[cfg.warmup] == pytest.approx(1.0, rel=1e-12)
    assert factors[cfg.warmup + (cfg.steps - cfg.warmup) // 2] == pytest.approx(0.525, rel=1e-12)
    assert factors[-1] == pytest.approx(0.05, abs=1e-6)
    assert all(
        a >= b for a, b in zip(factors[cfg.warmup :], factors[cfg.warmup + 1 :], strict=False)
    )
