"""Ablations: replace a component's output by its mean (or by another string's) and measure.

A component is a head (``"head L.H"``) or an MLP (``"mlp L"``), optionally at
chosen positions. Mean ablation replaces its output by the mean over a reference
data set at each position; resample ablation by its output on other strings of
the same data set (a fixed random permutation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.activations import ActSlice, get_activations
from bracketlens.components import Component, all_components
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup, group_rows, labels_present
from bracketlens.errors import BracketLensError
from bracketlens.interventions import Start, patch, run_patched
from bracketlens.model.layers import Attention
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def component_hook_name(
    model: BracketTransformer, component: str | Component
) -> tuple[str, int | None]:
    """Hook name and head index (None for an MLP) of a component (or ``"head L.H"``, ``"mlp L"``)."""
    if isinstance(component, str):
        if not component.startswith(("head ", "mlp ")):
            raise BracketLensError(f"unknown component {component!r}: use 'head L.H' or 'mlp L'")
        component = Component.parse(component)
    component.check(model.cfg)
    return component.hook_name, component.head


def component_names(model: BracketTransformer) -> list[str]:
    """Every head and MLP of the model, in forward order (their labels)."""
    return [c.label for c in all_components(model.cfg)]


def group_means(values: Tensor, data: BracketDataset) -> dict[str, float]:
    """Mean of per-string values over all strings and over each failure group present."""
    values = values.double()  # so that bootstrap intervals (float64) agree to the last digit
    groups = data.failure_groups
    return {
        label: float(values[group_rows(groups, label)].mean()) for label in labels_present(groups)
    }


@torch.no_grad()
def mean_activation(
    model: BracketTransformer, tokens: Int[Tensor, "batch seq"], component: str
) -> Tensor:
    """The component's mean output at each position over ``tokens``: ``[1, seq, (head,) d]``."""
    name, _ = component_hook_name(model, component)
    return get_activations(model, tokens, name)[name].mean(0, keepdim=True)


@dataclass(frozen=True)
class AblationEffect:
    """Loss and accuracy with one component ablated, overall and per failure group."""

    component: str
    method: str
    loss: float
    accuracy: float
    p_balanced: Float[Tensor, " batch"]
    by_group: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, object]:
        """Loss and accuracy, overall and per failure group."""
        return {"loss": self.loss, "accuracy": self.accuracy, "by_group": self.by_group}


def summarise(
    logits: Float[Tensor, "batch 2"], data: BracketDataset, component: str, method: str
) -> AblationEffect:
    """Loss (cross-entropy at position 0), accuracy and per-group numbers of some logits."""
    labels = data.labels.long()
    losses = F.cross_entropy(logits, labels, reduction="none")
    correct = logits.argmax(-1) == labels
    groups = data.failure_groups
    by_group = {
        g.label: {
            "n": int((groups == g).sum()),
            "loss": float(losses[groups == g].mean()) if (groups == g).any() else float("nan"),
            "accuracy": float(correct[groups == g].float().mean())
            if (groups == g).any()
            else float("nan"),
        }
        for g in FailureGroup
    }
    return AblationEffect(
        component=component,
        method=method,
        loss=float(losses.mean()),
        accuracy=float(correct.float().mean()),
        p_balanced=logits.softmax(-1)[:, 1],
        by_group=by_group,
    )


def ablate(
    model: BracketTransformer,
    data: BracketDataset,
    component: str,
    method: str = "mean",
    positions: Sequence[int] | None = None,
    reference: BracketDataset | None = None,
    seed: int = 0,
) -> AblationEffect:
    """Ablate one component (at ``positions``, default all) and measure loss and accuracy.

    Args:
        method: ``"mean"`` (the mean output over ``reference``, default ``data``) or
            ``"resample"`` (the output on another string of ``data``, a seeded
            permutation).
    """
    name, head = component_hook_name(model, component)
    if method == "mean":
        mean = mean_activation(model, (reference or data).tokens, component)
        logits = run_patched(
            model, data.tokens, [(name, patch(mean, head=head, positions=positions))]
        )
    elif method == "resample":
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        source = get_activations(model, data.tokens, name)[name][perm]
        logits = run_patched(
            model,
            data.tokens,
            per_batch=lambda rows: [(name, patch(source[rows], head=head, positions=positions))],
        )
    else:
        raise BracketLensError(f"unknown ablation method {method!r}: use 'mean' or 'resample'")
    return summarise(logits, data, component, method)


@dataclass(frozen=True)
class CleanRun:
    """One clean pass: each component's mean output per position, and each block's input.

    Attributes:
        means: hook name -> mean over the strings, ``[1, seq, (head,) d_model]``
            (full width: padding positions included, as :func:`mean_activation` takes it;
            the last block's at position 0 alone, ``[1, 1, ...]``, when the pass was
            ``class_only``).
        resid_pre: each block's input, ``[row, seq, d_model]``, for the strings
            :func:`clean_run` was asked to keep (the last block's at position 0 alone
            when the pass was ``class_only``).
        z: each block's ``attn.hook_z``, ``[row, seq, head, d_head]``, likewise: with
            ``resid_pre``, what enters each block's MLP half (:meth:`resid_mid`).
        logits: ``[batch, 2]``, the class logits of every string.
        acts: each slice :func:`clean_run` was asked to keep, of every string (full
            width where the slice keeps positions): what later interventions on the
            same strings read from the clean run.
    """

    means: dict[str, Tensor]
    resid_pre: list[Tensor]
    z: list[Tensor]
    logits: Tensor
    acts: dict[ActSlice, Tensor]

    def resid_mid(
        self,
        model: BracketTransformer,
        layer: int,
        rows: Tensor,
        width: int,
        head: int | None = None,
    ) -> Tensor:
        """Block ``layer``'s ``hook_resid_mid`` for the kept strings ``rows`` (trimmed to
        ``width``), with head ``head``'s output replaced by its mean when given."""
        z = self.z[layer][rows, :width]
        attn = cast(Attention, model.blocks[layer].attn)
        result = attn.head_results(z)
        if head is not None:
            name = act_name("result", layer)
            result[:, :, head] = self.means[name][0, : z.shape[1], head]
        return self.resid_pre[layer][rows, : z.shape[1]] + attn.output(result)


@torch.no_grad()
def clean_run(
    model: BracketTransformer,
    data: BracketDataset,
    rows: Tensor | None = None,
    batch_size: int = DEFAULT_BATCH,
    keep: Sequence[ActSlice] = (),
) -> CleanRun:
    """The component means over ``data``, the block inputs of the strings in ``rows``,
    every string's logits, and the activation slices in ``keep``.

    The last block is computed at position 0 alone (``class_only``) unless a slice in
    ``keep`` needs another of its queries: its components' means, and the slices kept
    of its hooks from the queries on, are then at position 0 only, the only position
    of theirs that a patched run (also ``class_only``) reads.
    """
    names = sorted({component_hook_name(model, c)[0] for c in component_names(model)})
    class_only = all(
        p.position in (None, 0) or p.is_pattern or not model.at_position_0_only(p.hook_name)
        for p in keep
    )
    n = len(data)
    kept = torch.ones(n, dtype=torch.bool) if rows is None else rows
    slot = kept.long().cumsum(0) - 1  # where each kept string's input goes
    sums: dict[str, Tensor] = {}
    stores: dict[str, list[Tensor]] = {"resid_pre": [], "z": []}  # per layer
    acts: dict[ActSlice, Tensor] = {}
    batch: dict[str, slice] = {}

    def add(act: Tensor, hook: Any) -> None:
        total = act.sum(0)
        sums[hook.name] = sums[hook.name] + total if hook.name in sums else total

    last = model.cfg.n_layers - 1

    def keep_rows(act: Tensor, hook: Any) -> None:
        layer, name = hook.name.split(".")[1], hook.name.rsplit("hook_", 1)[1]
        if class_only and int(layer) == last:
            act = act[:, :1]  # what a class_only run from the last block's MLP half reads
        store = stores[name]
        if len(store) == int(layer):
            store.append(torch.empty(int(kept.sum()), *act.shape[1:]))
        mine = kept[batch["now"]]
        store[int(layer)][slot[batch["now"]][mine]] = act[mine]

    def keep_slices(act: Tensor, hook: Any) -> None:
        for part in wanted[hook.name]:
            value = part.take(act)
            if part not in acts:
                acts[part] = torch.empty((n, *value.shape[1:]), dtype=value.dtype)
            acts[part][batch["now"]] = value

    wanted: dict[str, list[ActSlice]] = {}
    for part in dict.fromkeys(keep):
        wanted.setdefault(part.hook_name, []).append(part)

    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (name, add) for name in names
    ]
    hooks += [(act_name(name, lyr), keep_rows) for lyr in range(last + 1) for name in stores]
    hooks += [(name, keep_slices) for name in wanted]
    logits = torch.empty(n, model.cfg.d_vocab_out)
    with model.hooks(fwd_hooks=hooks):
        for start in range(0, n, batch_size):
            batch["now"] = slice(start, min(start + batch_size, n))
            logits[batch["now"]] = model(data.tokens[batch["now"]], class_only=class_only)[:, 0]
    means = {k: (v / n)[None] for k, v in sums.items()}
    return CleanRun(means, stores["resid_pre"], stores["z"], logits, acts)


def mean_ablations(
    model: BracketTransformer,
    data: BracketDataset,
    rows: Tensor | None = None,
    clean: CleanRun | None = None,
) -> list[AblationEffect]:
    """Mean ablation of every head and MLP (means over ``data``, per position).

    The numbers of :func:`ablate` with ``"mean"`` for each component, from one clean
    pass. The residual stream is a sum, so each ablated run starts after the component:
    a head's at its block's MLP half, from the clean ``hook_resid_mid`` with the head's
    output swapped for its mean; an MLP's at the next block, from the clean
    ``hook_resid_mid`` plus the MLP's mean.

    Args:
        rows: the strings to ablate on (all by default); the means are over all of ``data``.
        clean: ``clean_run(model, data, rows)``, if already run.
    """
    clean = clean or clean_run(model, data, rows)
    chosen = data if rows is None else data[rows]
    if len(clean.resid_pre[0]) != len(chosen):
        raise BracketLensError("clean must be the clean run of data kept for the same rows")
    out = []
    for component in all_components(model.cfg):
        layer = component.layer
        if component.head is not None:
            ablated = partial(clean.resid_mid, model, layer, head=component.head)
            start = Start.after(component.hook_name, ablated)
        else:
            mean = clean.means[component.hook_name][0]

            def mlp_ablated(
                rows: Tensor, width: int, layer: int = layer, mean: Tensor = mean
            ) -> Tensor:
                mid = clean.resid_mid(model, layer, rows, width)
                return mid + mean[: mid.shape[1]]

            start = Start.after(component.hook_name, mlp_ablated)
        logits = run_patched(model, chosen.tokens, start=start)
        out.append(summarise(logits, chosen, component.label, "mean"))
    return out
