"""Training a bracket classifier from a seed, deterministically on CPU."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set, near_miss_set, training_set
from bracketlens.errors import BracketLensError
from bracketlens.limits import check_seed
from bracketlens.model.checkpoint import check_output_path, save_checkpoint
from bracketlens.model.config import ModelConfig
from bracketlens.model.predict import evaluate
from bracketlens.model.transformer import BracketTransformer


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (with the library version)."""

    seed: int = 0
    n_train: int = 300_000  # strings generated once by data.generate.training_set
    steps: int = 11_000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 300
    n_eval: int = 100_000  # held-out strings of the evaluation distribution
    n_near_miss: int = 10_000
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        for name in ("n_train", "steps", "batch_size", "n_eval", "n_near_miss"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BracketLensError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainResult:
    """A trained model and the record saved beside it."""

    model: BracketTransformer
    record: dict[str, object]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and make torch use deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for third-party code on the legacy global RNG
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def train(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    reference: BracketDataset | None = None,
    on_step: Callable[[int, float], None] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a model from ``cfg.seed`` and evaluate it on held-out data.

    Held-out strings come from seeds derived from ``cfg.seed`` that the training set
    never uses; ``reference`` (e.g. the course data set) is evaluated too if given.
    Only the optimisation runs on ``device``: data, sampling and the held-out
    evaluation stay on the CPU, and the returned model is on the CPU. Weights are
    bit-reproducible on CPU only.
    """
    start = time.perf_counter()
    fitted = fit(cfg, progress=progress, on_step=on_step, device=device)
    train_seconds = time.perf_counter() - start
    model = fitted.model
    record = {
        "seed": cfg.seed,
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
        "data_recipe": f"bracketlens.data.generate.training_set(n={cfg.n_train}, seed={cfg.seed})",
        "steps": cfg.steps,
        "final_loss": float(np.mean(fitted.losses[-100:])),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "held_out": held_out_accuracy(model, cfg, reference),
    }
    return TrainResult(model=model, record=record)


@dataclass(frozen=True)
class Fitted:
    """A model after some optimisation steps, the loss of each step, and kept parameters."""

    model: BracketTransformer
    losses: list[float]
    # parameters (CPU copies) after each step count asked for with ``keep``
    kept: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def fit(
    cfg: TrainConfig,
    *,
    steps: int | None = None,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    device: str | torch.device = "cpu",
    keep: Collection[int] = (),
) -> Fitted:
    """Run the first ``steps`` optimisation steps of ``cfg``'s recipe (all of them by default).

    The learning-rate schedule is ``cfg``'s whole schedule, so the weights after ``steps``
    steps are the full run's weights at that step. The model comes back on the CPU, in
    eval mode, without gradients; ``keep`` names step counts after which a copy of the
    parameters is kept as well.
    """
    n_steps = cfg.steps if steps is None else steps
    if not 0 < n_steps <= cfg.steps:
        raise BracketLensError(f"steps must lie in 1..{cfg.steps}, got {n_steps}")
    if any(not 0 < k <= n_steps for k in keep):
        raise BracketLensError(f"steps to keep must lie in 1..{n_steps}, got {sorted(keep)}")
    kept: dict[int, dict[str, torch.Tensor]] = {}
    seed_everything(cfg.seed)
    data = training_set(cfg.n_train, seed=cfg.seed)
    lengths = data.seq_length  # once: recomputing it per step costs as much as the step
    model = BracketTransformer(cfg.model)
    model.init_weights(seed=cfg.seed)
    model.to(device)  # after the CPU initialisation, so every device starts from the same weights
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    bar = tqdm(range(n_steps), disable=not progress, desc="train", unit="step")
    for step in bar:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen)
        logits, labels = _batch_logits(model, data, lengths, idx, device)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step + 1 in keep:
            kept[step + 1] = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
        if on_step is not None:
            on_step(step, losses[-1])
        if step % 50 == 0:
            acc = ((logits.argmax(-1) == 1) == labels.bool()).float().mean().item()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", acc=f"{acc:.3f}")
    model.cpu()
    model.eval()
    model.requires_grad_(False)
    return Fitted(model=model, losses=losses, kept=kept)


def held_out_accuracy(
    model: BracketTransformer, cfg: TrainConfig, reference: BracketDataset | None
) -> dict[str, object]:
    """Accuracy on fresh evaluation and near-miss strings (and ``reference`` if given)."""
    # seeds offset far from the training seed: the generators never share a stream
    eval_seed, near_seed = cfg.seed + 1_000_003, cfg.seed + 2_000_003
    out: dict[str, object] = {
        "evaluation": evaluate(model, evaluation_set(cfg.n_eval, eval_seed)).to_dict()
        | {"recipe": f"evaluation_set(n={cfg.n_eval}, seed={eval_seed})"},
        "near_miss": evaluate(model, near_miss_set(cfg.n_near_miss, near_seed)).to_dict()
        | {"recipe": f"near_miss_set(n={cfg.n_near_miss}, seed={near_seed})"},
    }
    if reference is not None:
        out["reference"] = evaluate(model, reference).to_dict() | {"recipe": reference.description}
    return out


def train_to_file(
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
    reference: BracketDataset | None = None,
    command: str | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train and save atomically; refuses an existing ``out`` unless ``force``.

    The path is checked before training so a mistake costs seconds, not minutes.
    """
    out = check_output_path(out, force=force)
    result = train(cfg, progress=progress, reference=reference, device=device)
    record = dict(result.record)
    if command is not None:
        record["command"] = command
    save_checkpoint(result.model, out, record, force=force)
    return TrainResult(model=result.model, record=record)


def _batch_logits(
    model: BracketTransformer,
    data: BracketDataset,
    lengths: torch.Tensor,
    idx: torch.Tensor,
    device: str | torch.device = "cpu",
    n_chunks: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position-0 logits of a batch, run as length-sorted chunks with padding trimmed.

    Pad keys are masked, so this is the same function as one padded batch (to float
    rounding) at about 60% of the cost on mixed lengths.
    """
    idx = idx[torch.argsort(lengths[idx], stable=True)]
    logits = [
        model.class_logits(data.tokens[chunk, : int(lengths[chunk].max()) + 2].to(device))
        for chunk in idx.chunk(n_chunks)
    ]
    return torch.cat(logits), data.labels[idx].long().to(device)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak rate."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress))
