"""Interchange intervention training: plant a variable at a chosen head and position.

Each step runs one batched forward pass over four groups of rows and adds a loss
for each:

- **task**: strings with their labels;
- **interchange**: with the planted head's ``z`` at the planted position taken from
  a source row of the same pass, the model must give the high-level model's answer
  when the planted variable takes the source's value. Bases are drawn where the
  other variable is false, so that the answer turns on the planted one alone;
- **strict**: with a random subset of :func:`strict_nodes` taken from the source,
  the answer must not change (the variable lives in the planted node only);
- **source**: the source rows' own labels;
- **probe**: a linear read-out of the planted variable from the planted node's
  ``z`` (task and source rows), trained with the model, so that the node is pushed
  to hold the variable from the first step instead of only once a route reads it.

This is strict IIT (Gupta et al. 2024, InterpBench) cut down to one aligned node.
The strict nodes are only those no mechanism of the *other* variable needs: the
negative check needs every suffix's elevation, which only layer-0 heads at
positions 2 and later can gather, so patching those must be allowed to change the
answer. For ``total_elevation`` (planted in layer 0) the strict nodes are the heads
of layers 0 and 1 at positions 0 and 1; for ``negative`` (layer 1) every other
layer-1 head at positions 0 to 3.

The defaults (interchange weight 6, the probe, the gradient norm clipped to 1, 1,200
steps: about 6 minutes a model at one thread) plant the variable at the chosen node;
without clipping and the probe, weight 6 can diverge. IIA is :func:`iia_score` (0.5:
no effect). At one thread, ``negative`` planted in head 1.1 at position 2 (seed 1)
reaches accuracy 99.5% and IIA 0.93 at step 1,200 (379 s), and ``total_elevation`` in
head 0.0 at position 2 (seed 0) IIA 0.95 by step 800. Seeds differ in when the route
forms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set, training_set
from bracketlens.data.truth import failure_types
from bracketlens.interventions import Hook, patch
from bracketlens.model.names import act_name
from bracketlens.model.predict import evaluate
from bracketlens.model.train import seed_everything
from bracketlens.model.transformer import BracketTransformer
from bracketlens.planted.suite import Placement

PATCH_POSITIONS = (0, 1, 2, 3)  # every string of >= 2 parens has a token at each
OTHER = {"total_elevation": "negative", "negative": "total_elevation"}
Node = tuple[int, int, int]  # (layer, head, position) of an attn.hook_z


@dataclass(frozen=True)
class IITConfig:
    """The planting recipe (small: minutes on one core).

    ``batch_size`` rows of each of the four groups go into every step's pass.
    """

    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    iit_weight: float = 6.0
    probe_weight: float = 1.0
    clip: float = 1.0  # largest gradient norm of a step
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


def _answer(values: dict[str, Bool[Tensor, " batch"]]) -> Int[Tensor, " batch"]:
    return (~(values["total_elevation"] | values["negative"])).long()


def interchange_labels(
    variable: str, base: Int[Tensor, "batch seq"], source: Int[Tensor, "batch seq"]
) -> Int[Tensor, " batch"]:
    """Balanced (1) or not after setting ``variable`` to the source's value."""
    values = high_level(base)
    values[variable] = high_level(source)[variable]
    return _answer(values)


def strict_nodes(p: Placement) -> list[Node]:
    """The heads and positions where a patch must not change the answer (module docstring)."""
    if p.variable == "total_elevation":
        nodes = [(layer, h, q) for layer in (0, 1) for h in (0, 1) for q in (0, 1)]
    else:
        nodes = [(1, h, q) for h in (0, 1) for q in PATCH_POSITIONS]
    return [n for n in nodes if n != (p.layer, p.head, p.position)]


def patched_logits(
    model: BracketTransformer,
    base: Int[Tensor, "batch seq"],
    source_z: Tensor,
    layer: int,
    head: int,
    position: int,
) -> Tensor:
    """Position-0 logits of ``base`` with one head's ``z`` at one position from the source."""
    hook = (act_name("z", layer), patch(source_z, head=head, positions=[position]))
    return model.run_with_hooks(base, fwd_hooks=[hook])[:, 0]


def source_z(model: BracketTransformer, source: Tensor, layer: int) -> Tensor:
    name = act_name("z", layer)
    with torch.no_grad():
        _, cache = model.run_with_cache(source, names_filter=name)
    return cache[name]


def train_planted(placement: Placement, cfg: IITConfig | None = None) -> Planted:
    """Train a model from ``placement.seed`` with the variable planted where it says."""
    cfg = cfg or IITConfig()
    seed_everything(placement.seed)
    start = time.perf_counter()
    data = _long_enough(training_set(cfg.n_train, seed=placement.seed))
    values = high_level(data.tokens)
    informative = torch.nonzero(~values[OTHER[placement.variable]]).squeeze(1)
    model = BracketTransformer()
    model.init_weights(seed=placement.seed)
    probe = torch.nn.Linear(model.cfg.d_head, 1)  # trained with the model, then dropped
    params = [*model.parameters(), *probe.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    gen = torch.Generator().manual_seed(placement.seed)
    strict = strict_nodes(placement)
    labels = _answer(values)
    for _ in range(cfg.steps):
        loss = _step_loss(
            model, probe, placement, data, values, labels, informative, strict, cfg, gen
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        schedule.step()
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
    model: BracketTransformer,
    probe: torch.nn.Linear,
    p: Placement,
    data: BracketDataset,
    values: dict[str, Tensor],
    labels: Tensor,
    informative: Tensor,
    strict: list[Node],
    cfg: IITConfig,
    gen: torch.Generator,
) -> Tensor:
    """The five losses of one step, from one pass over [task | interchange | strict | source]."""
    n = cfg.batch_size
    task, strict_base, source = (torch.randint(len(data), (n,), generator=gen) for _ in range(3))
    base = informative[torch.randint(len(informative), (n,), generator=gen)]
    rows = torch.cat([task, base, strict_base, source])
    tokens = data.tokens[rows, : int(data.seq_length[rows].max()) + 2]
    chosen = torch.rand(n, len(strict), generator=gen) < 0.5  # which strict nodes each row patches
    chosen[torch.arange(n), torch.randint(len(strict), (n,), generator=gen)] = True
    ar = torch.arange(n)
    planted: dict[str, Tensor] = {}

    def hook_for(layer: int) -> Hook:
        def hook(z: Tensor, hook: object) -> Tensor:
            if layer == p.layer:  # the node's own value, before any patch
                planted["z"] = z[:, p.position, p.head]
            z = z.clone()
            src = z[3 * n :]
            if layer == p.layer:
                z[n + ar, p.position, p.head] = src[:, p.position, p.head]
            for j, (layer_j, head_j, pos_j) in enumerate(strict):
                if layer_j == layer:
                    r = ar[chosen[:, j]]
                    z[2 * n + r, pos_j, head_j] = src[r, pos_j, head_j]
            return z

        return hook

    layers = sorted({p.layer, *(node[0] for node in strict)})
    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (act_name("z", layer), hook_for(layer)) for layer in layers
    ]
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, 0]
    swapped = {k: v[base] for k, v in values.items()}
    swapped[p.variable] = values[p.variable][source]
    probed = torch.cat([planted["z"][:n], planted["z"][3 * n :]])
    probe_target = values[p.variable][torch.cat([task, source])].float()
    return (
        F.cross_entropy(logits[:n], labels[task])
        + cfg.iit_weight * F.cross_entropy(logits[n : 2 * n], _answer(swapped))
        + F.cross_entropy(logits[2 * n : 3 * n], labels[strict_base])
        + F.cross_entropy(logits[3 * n :], labels[source])
        + cfg.probe_weight
        * F.binary_cross_entropy_with_logits(probe(probed).squeeze(1), probe_target)
    )


def iia_score(
    predicted: Int[Tensor, " batch"], want: Int[Tensor, " batch"], base_label: Int[Tensor, " batch"]
) -> float:
    """IIA as the mean over the two kinds of pairs: the swap changes the answer, or not.

    Scoring only the pairs whose answer changes would credit a patch that merely
    breaks the model; scoring all pairs would credit doing nothing. The mean of the
    two kinds gives both 0.5 and a faithful patch 1.0.
    """
    hit = (predicted == want).float()
    moved = want != base_label
    if moved.all() or not moved.any():
        return float(hit.mean())
    return 0.5 * float(hit[moved].mean()) + 0.5 * float(hit[~moved].mean())


def interchange_accuracy(
    model: BracketTransformer, variable: str, data: BracketDataset, seed: int = 0
) -> dict[str, float]:
    """IIA (:func:`iia_score`) of ``variable`` at every head and position in PATCH_POSITIONS.

    Keys are ``"L.H@pos"``; the sources are a seeded permutation of ``data``.
    """
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    base, source = data.tokens, data.tokens[perm]
    want = interchange_labels(variable, base, source)
    out = {}
    for layer in range(model.cfg.n_layers):
        z = source_z(model, source, layer)
        for head in range(model.cfg.n_heads):
            for pos in PATCH_POSITIONS:
                with torch.no_grad():
                    logits = patched_logits(model, base, z, layer, head, pos)
                score = iia_score(logits.argmax(-1), want, data.labels.long())
                out[f"{layer}.{head}@{pos}"] = round(score, 4)
    return out


def _long_enough(data: BracketDataset) -> BracketDataset:
    """Strings of two or more parens: every PATCH_POSITION holds a token."""
    return data[data.seq_length >= 2]
