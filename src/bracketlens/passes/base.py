"""What every pass of the engine shares: the current batch, groups, and the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from jaxtyping import Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.errors import BracketLensError
from bracketlens.layernorm_fit import FitMoments
from bracketlens.model.predict import iter_batches
from bracketlens.model.transformer import BracketTransformer

HALF_MAX = 60_000.0  # float16 overflows just above 65,504

HookList = list[tuple[str | Callable[..., Any], Callable[..., Any]]]


class Pass:
    """Shared state of one pass: the current batch and the group of each string."""

    def __init__(self, n: int, groups: Int[Tensor, " batch"] | None, dtype: torch.dtype) -> None:
        self.group_ids = torch.zeros(n, dtype=torch.long) if groups is None else groups.long()
        if self.group_ids.shape != (n,) or (n and self.group_ids.min() < 0):
            raise BracketLensError("groups must hold one non-negative integer per string")
        self.n_groups = int(self.group_ids.max()) + 1 if n else 1
        self.dtype = dtype
        self.batch: dict[str, Tensor] = {}  # the current batch's indices, tokens, pending inputs

    @property
    def idx(self) -> Tensor:
        return self.batch["idx"]

    def per_group(self, moments: list[FitMoments], x: Tensor, y: Tensor) -> None:
        if self.n_groups == 1:
            moments[0].add(x, y)
            return
        g = self.group_ids[self.idx]
        for gid in torch.unique(g).tolist():
            rows = g == gid
            moments[gid].add(x[rows], y[rows])

    def kept(self, act: Tensor) -> Tensor:
        if self.dtype == torch.float16 and act.abs().max() > HALF_MAX:
            raise BracketLensError(
                "activations too large to keep in float16; pass keep_dtype=torch.float32"
            )
        return act.to(self.dtype)

    def pending(self, key: str, pos: int) -> Callable[[Tensor, object], None]:
        def hook(x: Tensor, hook: object) -> None:
            self.batch[key] = x[:, pos]

        return hook


def run_pass(
    model: BracketTransformer,
    data: BracketDataset,
    state: Pass,
    hooks: HookList,
    batch_size: int,
    min_width: int = 1,
    class_only: bool = False,
    stop_at_layer: int | None = None,
) -> None:
    """Run every batch of ``data`` once with ``hooks`` (at least ``min_width`` tokens wide).

    With ``class_only`` (for hooks that read the last block at position 0 only) the
    last block computes position 0 alone; with ``stop_at_layer`` (for hooks at that
    block's input or before) the pass ends there (:meth:`BracketTransformer.forward`).
    """
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for idx, tokens in iter_batches(data.tokens, batch_size):
            if tokens.shape[1] < min_width:  # every batch keeps the read position
                tokens = data.tokens[idx, :min_width]
            state.batch.update(idx=idx, tokens=tokens)
            model(tokens, class_only=class_only, stop_at_layer=stop_at_layer)


def layer0_moments(
    model: BracketTransformer, tokens: Int[Tensor, "batch seq"], moments: FitMoments | None = None
) -> FitMoments:
    """Moments of layer 0's ``ln1`` over every (string, position), padding included.

    Its input at a position is ``W_E[token] + W_pos[position]``: at most
    ``d_vocab x n_ctx`` distinct rows. Counting how often each occurs and adding each
    distinct row once, weighted by its count, gives exactly the moments of all rows
    at a tiny fraction of the cost, and needs no hook in the forward pass.
    """
    d_model = model.cfg.d_model
    moments = FitMoments(d_model, d_model) if moments is None else moments
    n_vocab, width = model.cfg.d_vocab, tokens.shape[1]
    pair = tokens * width + torch.arange(width)  # (token, position) as one index
    counts = torch.bincount(pair.flatten(), minlength=n_vocab * width).double()
    seen = counts > 0
    with torch.no_grad():
        x = (model.W_E.detach()[:, None, :] + model.W_pos.detach()[None, :width, :]).flatten(0, 1)
        ln1 = cast(torch.nn.Module, model.blocks[0].ln1)  # called before any hook is added
        moments.add(x[seen], ln1(x[seen][None])[0], counts[seen])
    return moments
