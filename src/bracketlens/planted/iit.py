"""Interchange intervention training: plant a variable at a chosen head and position.

Each step draws base strings and source strings and adds three losses:

- **task**: the base strings' labels;
- **interchange**: with the planted head's ``z`` at the planted position taken from
  the source, the model must give the high-level model's answer when the planted
  variable takes the source's value and the other variable keeps the base's;
- **strict**: with the *other* head of the same layer at that position, or the
  planted head at another position, taken from the source, the answer must not
  change (so the variable lives in that one head and position only).

This is the recipe of strict IIT (Gupta et al. 2024, InterpBench) cut down to one
aligned node.

Status: the recipe is not yet tuned. Measured once, 300 steps on 5,000 strings
(``total_elevation`` in head 0.1 at position 2, seed 3) reached 87.9% accuracy and
IIA 0.19 at the planted location against 0.59 at head 1.1, position 0: the
variable was not planted. The default 1,200 steps (same placement) reached 99.3%
accuracy but IIA 0.11 at the planted location against 0.71 at head 1.1, position 0
(721 s wall, 314 s CPU, on a shared 2-core machine): the model solves the task
but routes the elevation through position 0, not through the planted head. Still
to try: a larger interchange weight, sources paired so that the variable differs,
and patching the planted head's output at every later position.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set, training_set
from bracketlens.data.truth import failure_types
from bracketlens.interventions import patch
from bracketlens.model.predict import evaluate
from bracketlens.model.train import seed_everything
from bracketlens.model.transformer import BracketTransformer
from bracketlens.planted.suite import Placement

PATCH_POSITIONS = (0, 1, 2, 3)  # every string of >= 2 parens has a token at each


@dataclass(frozen=True)
class IITConfig:
    """The planting recipe (small: minutes on one core)."""

    steps: int = 1200
    batch_size: int = 96
    lr: float = 3e-3
    n_train: int = 30_000
    n_eval: int = 4_000


@dataclass(frozen=True)
class Planted:
    """A model with a planted variable and its training record."""

    model: BracketTransformer
    record: dict[str, object]


def high_level(tokens: Int[Tensor, "batch seq"]) -> dict[str, Bool[Tensor, " batch"]]:
    """The variables of the balance algorithm: total elevation non-zero, some suffix positive."""
    ft = failure_types(tokens)
    return {"total_elevation": ft.total_elevation, "negative": ft.negative}


def interchange_labels(
    variable: str, base: Int[Tensor, "batch seq"], source: Int[Tensor, "batch seq"]
) -> Int[Tensor, " batch"]:
    """Balanced (1) or not after setting ``variable`` to the source's value."""
    values = high_level(base)
    values[variable] = high_level(source)[variable]
    return (~(values["total_elevation"] | values["negative"])).long()


def patched_logits(
    model: BracketTransformer,
    base: Int[Tensor, "batch seq"],
    source_z: Tensor,
    layer: int,
    head: int,
    position: int,
) -> Tensor:
    """Position-0 logits of ``base`` with one head's ``z`` at one position from the source."""
    hook = (f"blocks.{layer}.attn.hook_z", patch(source_z, head=head, positions=[position]))
    return model.run_with_hooks(base, fwd_hooks=[hook])[:, 0]


def source_z(model: BracketTransformer, source: Tensor, layer: int) -> Tensor:
    name = f"blocks.{layer}.attn.hook_z"
    with torch.no_grad():
        _, cache = model.run_with_cache(source, names_filter=name)
    return cache[name]


def train_planted(placement: Placement, cfg: IITConfig | None = None) -> Planted:
    """Train a model from ``placement.seed`` with the variable planted where it says."""
    cfg = cfg or IITConfig()
    seed_everything(placement.seed)
    start = time.perf_counter()
    data = _long_enough(training_set(cfg.n_train, seed=placement.seed))
    model = BracketTransformer()
    model.init_weights(seed=placement.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(placement.seed)
    for step in range(cfg.steps):
        base, source = (_batch(data, cfg.batch_size, gen) for _ in range(2))
        width = max(base.shape[1], source.shape[1])
        base, source = _pad(base, width), _pad(source, width)
        loss = _step_loss(model, placement, base, source, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    model.requires_grad_(False)
    held_out = evaluation_set(cfg.n_eval, seed=placement.seed + 1_000_003)
    record = {
        "planted": placement.to_json(),
        "iit_config": asdict(cfg),
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "accuracy": evaluate(model, held_out).accuracy,
        "iia": interchange_accuracy(model, placement.variable, _long_enough(held_out)),
    }
    return Planted(model=model, record=record)


def _step_loss(
    model: BracketTransformer, p: Placement, base: Tensor, source: Tensor, step: int
) -> Tensor:
    labels = (~(high_level(base)["total_elevation"] | high_level(base)["negative"])).long()
    z = source_z(model, source, p.layer)
    task = F.cross_entropy(model.class_logits(base), labels)
    swapped = interchange_labels(p.variable, base, source)
    iit = F.cross_entropy(patched_logits(model, base, z, p.layer, p.head, p.position), swapped)
    # strict: alternate between the other head here and this head elsewhere
    if step % 2 == 0:
        head, position = 1 - p.head, p.position
    else:
        others = [q for q in PATCH_POSITIONS if q != p.position]
        head, position = p.head, others[(step // 2) % len(others)]
    strict = F.cross_entropy(patched_logits(model, base, z, p.layer, head, position), labels)
    return task + iit + strict


def interchange_accuracy(
    model: BracketTransformer, variable: str, data: BracketDataset, seed: int = 0
) -> dict[str, float]:
    """IIA of ``variable`` at every head (layers 0-2) and position in PATCH_POSITIONS.

    Keys are ``"L.H@pos"``; each is the share of (base, source) pairs, the source a
    seeded permutation of ``data``, where the patched model gives the answer of the
    high-level model with ``variable`` from the source. Only pairs where that answer
    differs from the base's own label count, so that doing nothing scores 0.
    """
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    base, source = data.tokens, data.tokens[perm]
    want = interchange_labels(variable, base, source)
    moved = want != data.labels.long()
    out = {}
    for layer in range(model.cfg.n_layers):
        z = source_z(model, source, layer)
        for head in range(model.cfg.n_heads):
            for pos in PATCH_POSITIONS:
                with torch.no_grad():
                    logits = patched_logits(model, base, z, layer, head, pos)
                hit = logits.argmax(-1) == want
                out[f"{layer}.{head}@{pos}"] = float(hit[moved].float().mean())
    return out


def _long_enough(data: BracketDataset) -> BracketDataset:
    """Strings of two or more parens: every PATCH_POSITION holds a token."""
    return data[data.seq_length >= 2]


def _batch(data: BracketDataset, size: int, gen: torch.Generator) -> Tensor:
    idx = torch.randint(len(data), (size,), generator=gen)
    width = int(data.seq_length[idx].max()) + 2
    return data.tokens[idx, :width]


def _pad(tokens: Tensor, width: int) -> Tensor:
    if tokens.shape[1] == width:
        return tokens
    return F.pad(tokens, (0, width - tokens.shape[1]), value=1)  # [pad] is token 1
