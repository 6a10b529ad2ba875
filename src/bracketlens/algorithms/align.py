"""Patched runs at locations: whole-vector screening of many, subspace patches and DAS fits at one.

Every run goes through :func:`~bracketlens.interventions.run_from`, starting after
the part of the model it patches (:meth:`.Site.start`): from the base's cached
residual stream there, plus the patch's change. Until an attention reads them, only
the patched positions differ from the base, so only they are recomputed
(:meth:`.Site.base_reads` names what the run takes from the base elsewhere). The
patch itself is :func:`~bracketlens.interventions.interchange.mix_rows`, the rule of
the ``patch_rows`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bracketlens.algorithms.locations import Location, PairActivations, Site
from bracketlens.interventions.interchange import OrthogonalBasis, mix_rows
from bracketlens.interventions.runner import run_from
from bracketlens.model.layers import TransformerBlock
from bracketlens.model.transformer import BracketTransformer

CHUNK = 4096  # patched rows per forward pass


@dataclass(frozen=True)
class Outcome:
    """Per pair: the patched prediction (True = balanced) and whether the patch flipped it."""

    predicted: np.ndarray
    flipped: np.ndarray


def _mask(positions_sets: Sequence[tuple[int, ...]], width: int) -> Tensor:
    """``[sets, width]``: which positions each set patches."""
    mask = torch.zeros(len(positions_sets), width, dtype=torch.bool)
    for j, ps in enumerate(positions_sets):
        mask[j, [p for p in ps if p < width]] = True
    return mask


def _run(
    model: BracketTransformer,
    acts: PairActivations,
    site: Site,
    pair: np.ndarray,
    mask: Tensor,
    basis: Tensor | None = None,
) -> Tensor:
    """Class logits of the pairs ``pair`` (one row each) patched at ``site`` where ``mask``.

    The same logits as the base run with a ``patch_rows`` hook at ``site``, to float
    rounding: the run starts at :meth:`.Site.start`, from the base's residual there
    plus what the patch changes in it (a head's or the MLP's output moves by the
    change of its input times its output weights).
    """
    width = int(acts.lengths[pair].max()) + 2
    idx = torch.as_tensor(pair)
    old, new = acts.base[site.hook][idx, :width], acts.source[site.hook][idx, :width]
    if site.head is not None:
        old, new = old[:, :, site.head], new[:, :, site.head]
    where = mask[:, :width]
    patched = mix_rows(old, new, where, basis)
    hook, layer, mid = site.start()
    if hook == site.hook:  # a residual stream: the patch is where the run starts
        resid = patched
    else:
        block = cast(TransformerBlock, model.blocks[site.layer])
        out = block.attn.W_O[site.head] if site.head is not None else block.mlp.W_out
        resid = acts.base[hook][idx, :width] + (patched - old) @ out
    reads = site.base_reads(model.cfg.n_layers)[1:]  # the start itself is read above
    base = {name: acts.base[name][idx, :width] for name in reads}
    tokens = acts.base_tokens[idx, :width]
    return run_from(model, layer, resid, tokens, mid=mid, where=where, base=base)


@torch.no_grad()
def screen(
    model: BracketTransformer,
    acts: PairActivations,
    site: Site,
    position_sets: Sequence[tuple[int, ...]],
) -> np.ndarray:
    """``[sets, pairs]`` patched predictions of whole-vector patches, one per position set.

    Rows for every (pair, set) go through the model together, pairs sorted by
    length so that each chunk is trimmed to its longest string. A row whose patch
    cannot reach the class keeps the base's prediction and is not run (see
    :func:`_changes`).
    """
    base = (acts.base_logits[:, 1] > acts.base_logits[:, 0]).numpy()
    out = np.tile(base, (len(position_sets), 1))
    order = np.argsort(acts.lengths, kind="stable")
    full = _mask(position_sets, acts.base_tokens.shape[1])
    active = (_changes(model, acts, site)[order][:, None] & full[None]).any(-1).numpy()
    rows, sets = np.nonzero(active)  # [pairs (sorted), sets]
    pair = order[rows]
    for start in range(0, len(pair), CHUNK):
        chunk = slice(start, start + CHUNK)
        logits = _run(model, acts, site, pair[chunk], full[sets[chunk]])
        out[sets[chunk], pair[chunk]] = (logits[:, 1] > logits[:, 0]).numpy()
    return out


def _changes(model: BracketTransformer, acts: PairActivations, site: Site) -> Tensor:
    """``[pairs, width]``: where a whole-vector patch at ``site`` can move the class.

    Not at padding (pad keys are masked), not where the source's activation equals
    the base's (at ``resid_pre 0``, wherever the two share a token), and, for a run
    that starts after the last block's attention, nowhere but position 0 (the
    class is read there, and what is left of the model works position by position).
    """
    old, new = acts.base[site.hook], acts.source[site.hook]
    if site.head is not None:
        old, new = old[:, :, site.head], new[:, :, site.head]
    changes = (old != new).flatten(2).any(-1)
    width = changes.shape[1]
    changes &= torch.arange(width)[None] < torch.as_tensor(acts.lengths)[:, None] + 2
    _, layer, mid = site.start()
    if layer == model.cfg.n_layers or (mid and layer == model.cfg.n_layers - 1):
        changes[:, 1:] = False
    return changes


@torch.no_grad()
def outcome(
    model: BracketTransformer,
    acts: PairActivations,
    location: Location,
    basis: Tensor | None = None,
) -> Outcome:
    """Predictions of every pair patched at ``location`` (in span(basis) only, if given)."""
    base = (acts.base_logits[:, 1] > acts.base_logits[:, 0]).numpy()
    predicted = np.empty(len(base), dtype=bool)
    order = np.argsort(acts.lengths, kind="stable")
    full = _mask([location.positions], acts.base_tokens.shape[1])
    for start in range(0, len(order), CHUNK):
        pair = order[start : start + CHUNK]
        mask = full.expand(len(pair), -1)
        logits = _run(model, acts, location.site, pair, mask, basis)
        predicted[pair] = (logits[:, 1] > logits[:, 0]).numpy()
    return Outcome(predicted, predicted != base)


def fit_basis(
    model: BracketTransformer,
    acts: PairActivations,
    labels: np.ndarray,
    location: Location,
    dim: int,
    *,
    steps: int,
    seed: int,
    batch: int = 96,
    lr: float = 0.05,
    init: Tensor | None = None,
) -> Tensor:
    """Distributed alignment search: the ``dim``-dimensional subspace whose interchange
    best produces the counterfactual ``labels`` (cross-entropy on minibatches, Adam),
    from a random subspace or from ``init`` (a basis fitted before: more steps).

    The model's weights are frozen for the fit and restored afterwards.
    """
    d = location.site.width(model.cfg)
    rotation = OrthogonalBasis(d, dim, seed, init)
    optimiser = Adam(list(rotation.parameters()), lr=lr)
    target = torch.as_tensor(labels, dtype=torch.long)
    rng = np.random.default_rng(seed)
    order = np.argsort(acts.lengths, kind="stable")
    full = _mask([location.positions], acts.base_tokens.shape[1])
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        with torch.enable_grad():
            for _ in range(steps):
                # a window of pairs of similar length: the batch is trimmed to its longest string
                start = int(rng.integers(0, max(1, len(order) - batch + 1)))
                pair = order[start : start + batch]
                mask = full.expand(len(pair), -1)
                logits = _run(model, acts, location.site, pair, mask, rotation())
                loss = F.cross_entropy(logits, target[torch.as_tensor(pair)])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    return rotation().detach().clone()


class Adam:
    """Adam with torch's defaults (betas 0.9 and 0.999, eps 1e-8), step for step the
    same arithmetic as ``torch.optim.Adam``'s single-tensor update.

    The first ``torch.optim`` optimiser a process makes imports torch's compiler
    stack (``torch._dynamo``): about 1.9 s, more than a quick search's rotation
    fits themselves, paid by every ``report`` and ``explain``.
    """

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps, self.steps = params, lr, betas, eps, 0
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.steps)
        correction2 = (1 - beta2**self.steps) ** 0.5
        for p, m, v in zip(self.params, self.first, self.second, strict=True):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / correction2).add_(self.eps), value=-step_size)
