"""The one replacement hook and its small setters, in the manner of TransformerLens' patching.

Activations are laid out ``[batch, pos, d]`` (residual stream, MLP ``hook_post``,
``hook_mlp_out``) or ``[batch, pos, head, d]`` (``attn.hook_z``, ``hook_result``,
``hook_q/k/v``). A *source* has the same layout as the activation it replaces,
with batch 1 (a mean, broadcast over the batch) or the same batch (another
string's activations), and at least as many positions: batches that the engine
trims to their longest string read only the first ``width`` positions.

With ``basis`` (``[d, k]``, orthonormal columns), only the part of the
activation in that subspace is taken from the source: the interchange
intervention of distributed alignment search (Geiger et al. 2023). The hook is
differentiable in ``basis`` and ``source``, so the same code trains rotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.model.predict import DEFAULT_BATCH, iter_batches

Hook = Callable[[Tensor, object], Tensor]
#: ``None`` for every position, else a list of positions (or one int).
Positions = Sequence[int] | int | None


def _index(positions: Positions, width: int) -> slice | list[int]:
    """The positions that exist in an activation ``width`` positions wide.

    A position past a trimmed batch's width is padding in every string of it: pad
    keys are masked, so what is written there never reaches a real position.
    """
    if positions is None:
        return slice(None)
    chosen = [positions] if isinstance(positions, int) else list(positions)
    return [p for p in chosen if -width <= p < width]


def _mix(old: Tensor, new: Tensor, basis: Tensor | None) -> Tensor:
    """``new`` where there is no basis; else ``old`` with its part in span(basis) from ``new``."""
    if basis is None:
        return new
    basis = basis.to(old.dtype)
    return old + ((new - old) @ basis) @ basis.T


def patch(
    source: Tensor,
    *,
    head: int | None = None,
    positions: Positions = None,
    basis: Float[Tensor, "d k"] | None = None,
) -> Hook:
    """A hook writing ``source``'s values into the activation at ``positions`` (and ``head``).

    Args:
        source: same layout as the activation; batch 1 broadcasts.
        head: the head to write, for activations with a head axis (None: all heads,
            or an activation without one).
        positions: positions to write (None: every position).
        basis: write only the part in the span of these orthonormal columns.
    """

    def hook(act: Tensor, hook: object) -> Tensor:
        pos = _index(positions, act.shape[1])
        src = source[:, : act.shape[1]].to(act.dtype).expand_as(act)
        act = act.clone()
        if head is None:
            act[:, pos] = _mix(act[:, pos], src[:, pos], basis)
        else:
            act[:, pos, head] = _mix(act[:, pos, head], src[:, pos, head], basis)
        return act

    return hook


def set_at(value: Tensor, position: int, head: int | None = None) -> Hook:
    """A hook writing ``value`` (``[batch, d]``) at one position (and head)."""

    def hook(act: Tensor, hook: object) -> Tensor:
        if not -act.shape[1] <= position < act.shape[1]:
            return act  # a padding position of every string in this trimmed batch
        act = act.clone()
        if head is None:
            act[:, position] = value
        else:
            act[:, position, head] = value
        return act

    return hook


def zero(*, head: int | None = None, positions: Positions = None) -> Hook:
    """Zero ablation of the activation (one head's slice when ``head`` is given)."""

    def hook(act: Tensor, hook: object) -> Tensor:
        pos = _index(positions, act.shape[1])
        act = act.clone()
        if head is None:
            act[:, pos] = 0.0
        else:
            act[:, pos, head] = 0.0
        return act

    return hook


def constant(value: Tensor) -> Hook:
    """Replace the whole activation by ``value`` (e.g. freeze it at its clean run)."""

    def hook(act: Tensor, hook: object) -> Tensor:
        return value

    return hook


@dataclass(frozen=True)
class Start:
    """Where a patched run starts: every hook is at or after it, so the layers before
    it would compute the clean run again.

    Attributes:
        layer: the block the run starts at.
        resid: what enters it, of every string (``[strings, seq, d_model]``, e.g. a
            clean run's ``blocks.{layer}.hook_resid_pre``), or a function giving a
            batch's from its string indices and width (e.g. with an ablation applied).
        mid: ``resid`` is the block's ``hook_resid_mid``: the run starts at its MLP half.
    """

    layer: int
    resid: Tensor | Callable[[Tensor, int], Tensor]
    mid: bool = False

    def batch(self, rows: Tensor, width: int) -> Tensor:
        """The residual the strings ``rows``, trimmed to ``width``, start from."""
        if isinstance(self.resid, Tensor):
            return self.resid[rows, :width]
        return self.resid(rows, width)


@torch.no_grad()
def run_patched(
    model: torch.nn.Module,
    tokens: Int[Tensor, "batch seq"],
    hooks: Sequence[tuple[str, Hook]] = (),
    batch_size: int = DEFAULT_BATCH,
    per_batch: Callable[[Tensor], Sequence[tuple[str, Hook]]] | None = None,
    start: Start | None = None,
) -> Float[Tensor, "batch 2"]:
    """Class logits (position 0) with ``hooks`` applied; ``per_batch(rows)`` adds batch-specific ones.

    Batches are grouped by length and their padding trimmed (pad keys are masked,
    so a string's logits do not change). ``per_batch`` gets the batch's string
    indices: it is how a source with one row per string (resampling, interchange)
    is lined up with the batch being run. With ``start`` (:class:`Start`), the run
    starts there instead of at the embeddings. The last block computes position 0
    alone (``class_only``): hooks there from the attention scores on see that
    position only, the only one the class logits read.
    """
    out = torch.empty(len(tokens), 2, dtype=next(model.parameters()).dtype)
    for rows, batch in iter_batches(tokens, batch_size):
        extra = list(per_batch(rows)) if per_batch is not None else []
        with model.hooks(fwd_hooks=[*hooks, *extra]):  # type: ignore[operator]
            if start is None:
                out[rows] = model(batch, class_only=True)[:, 0]
            else:
                forward_from = getattr(model, "forward_from")  # noqa: B009
                resid = start.batch(rows, batch.shape[1])
                logits = forward_from(start.layer, resid, batch, class_only=True, mid=start.mid)
                out[rows] = logits[:, 0]
    return out
