"""Attribution patching: what matters for each failure group, in any model.

The generic fallback when a role of the elevation circuit is not found (and a
map of the whole model when it is). For every component (each head, each MLP)
at every position, the drop of the correct-class margin (logit of the true class
minus the other, at position 0) when its output is mean-ablated is estimated to
first order from one forward and one backward pass:

    drop(c, p) ~ -(mean_c,p - out_c,p) . d margin / d out_c,p

averaged over the strings of each failure group. The margin, not the loss: a
model that is right with high confidence has a loss whose gradient is nearly 0,
so loss-based estimates of every component vanish together. Two passes over the
data in all (one for the means, one with gradients), against one ablation run per
(component, position) pair for the exact numbers: 9 x 42 runs for this model. The
estimate is linear, so it is exact for small changes and can miss effects that
only show once a saturated softmax flips; :func:`bracketlens.interventions.ablate`
measures any pair exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import group_rows, labels_present
from bracketlens.errors import BracketLensError
from bracketlens.interventions.ablate import component_hook_name, component_names
from bracketlens.model.predict import DEFAULT_BATCH, iter_batches
from bracketlens.model.transformer import BracketTransformer


@dataclass(frozen=True)
class PatchScore:
    """The estimated margin drop when one component is mean-ablated at one position."""

    component: str
    position: int
    effect: float


@dataclass(frozen=True)
class AttributionPatching:
    """Estimated mean-ablation effects, ``[string, component, position]``.

    Attributes:
        effects: per-string estimated drop of the correct-class margin for each
            (component, position): positive where ablating it would hurt.
        components: component names, in the order of the second axis.
        groups: each string's failure group.
    """

    effects: Float[Tensor, "batch component position"]
    components: list[str]
    groups: Int[Tensor, " batch"]

    def mean(self, group: str = "all") -> Float[Tensor, "component position"]:
        """Mean estimated effect over the strings of a failure group (or all)."""
        rows = group_rows(self.groups, group)
        if not rows.any():
            raise BracketLensError(f"no string of the sample is in group {group!r}")
        return self.effects[rows].mean(0)

    def to_json(self, k: int = 5) -> dict[str, list[dict[str, object]]]:
        """The ``k`` most important (component, position) pairs per failure group."""
        return {
            group: [
                {
                    "component": t.component,
                    "position": t.position,
                    "estimated_margin_drop": t.effect,
                }
                for t in self.top(group, k)
            ]
            for group in labels_present(self.groups)
        }

    def top(self, group: str = "all", k: int = 5) -> list[PatchScore]:
        """The ``k`` (component, position) pairs whose ablation would hurt the margin most."""
        mean = self.mean(group)
        flat = mean.flatten().topk(min(k, mean.numel())).indices
        n_pos = mean.shape[1]
        return [
            PatchScore(self.components[int(i) // n_pos], int(i) % n_pos, float(mean.flatten()[i]))
            for i in flat
        ]


def attribution_patching(
    model: BracketTransformer,
    data: BracketDataset,
    batch_size: int = DEFAULT_BATCH // 2,  # a backward pass keeps every activation
    means: dict[str, Tensor] | None = None,
) -> AttributionPatching:
    """Estimate every (component, position)'s mean-ablation effect on each string's margin.

    Args:
        means: each component hook's mean over ``data`` per position (``[1, seq, ...]``,
            :func:`bracketlens.interventions.ablate.clean_run`), if already taken.
    """
    if len(data) == 0:
        raise BracketLensError("attribution patching needs at least one string")
    names = component_names(model)
    hooks = [component_hook_name(model, c) for c in names]
    hook_names = sorted({name for name, _ in hooks})
    if means is None:
        means = _means(model, data.tokens, hook_names, batch_size)
    n, width = data.tokens.shape
    # zero past a batch's trimmed width: a padding position's gradient is exactly 0
    effects = torch.zeros(n, len(names), width)
    for rows, tokens in iter_batches(data.tokens, batch_size):
        acts = _acts_and_grads(model, tokens, data.labels[rows], hook_names)
        for i, (name, head) in enumerate(hooks):
            act, grad = acts[name]
            w = act.shape[1]  # 1 in the last block: its other positions' gradient is 0
            mean = means[name][0] if means[name].dim() == act.dim() else means[name]
            per_dim = (act - mean[:w]) * grad  # the margin lost by moving to the mean
            per_pos = per_dim[:, :, head] if head is not None else per_dim
            effects[rows, i, :w] = per_pos.sum(-1)
    return AttributionPatching(effects=effects, components=names, groups=data.failure_groups)


@torch.no_grad()
def _means(
    model: BracketTransformer, tokens: Tensor, names: list[str], batch_size: int
) -> dict[str, Tensor]:
    """Each hook's mean activation over the strings, per position (padding as given;
    the last block's at position 0, all that the margin's gradient reaches there)."""
    sums: dict[str, Tensor] = {}

    def add(act: Tensor, hook: Any) -> None:
        total = act.sum(0)
        sums[hook.name] = sums[hook.name] + total if hook.name in sums else total

    for start in range(0, len(tokens), batch_size):
        model.run_with_hooks(
            tokens[start : start + batch_size],
            fwd_hooks=[(n, add) for n in names],
            class_only=True,
        )
    return {name: total / len(tokens) for name, total in sums.items()}


def _acts_and_grads(
    model: BracketTransformer, tokens: Tensor, labels: Tensor, names: list[str]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Activations and the gradient of the summed correct-class margin with respect to them."""
    kept: dict[str, Tensor] = {}

    def grad_from_here(act: Tensor, hook: Any) -> Tensor:
        return act.detach().requires_grad_(True)  # the weights need no gradient

    def keep(act: Tensor, hook: Any) -> None:
        kept[hook.name] = act

    with torch.enable_grad():
        logits = model.run_with_hooks(
            tokens,
            fwd_hooks=[("hook_embed", grad_from_here), *[(n, keep) for n in names]],
            class_only=True,  # the margin reads position 0: the last block computes no other
        )[:, 0]
        # summed: each string's gradient is that of its own margin; autograd.grad leaves
        # the weights' .grad untouched
        sign = labels.float() * 2 - 1  # +1 balanced, -1 unbalanced
        margin = (sign * (logits[:, 1] - logits[:, 0])).sum()
        grads = torch.autograd.grad(margin, [kept[n] for n in names])
    return {n: (kept[n].detach(), g.detach()) for n, g in zip(names, grads, strict=True)}
