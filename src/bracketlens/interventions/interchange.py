"""Interchange interventions in bulk: per-row positions and learned subspaces.

Screening hundreds of locations needs many patched runs. Two things make them
cheap, both built on :func:`.hooks.patch`'s mixing rule:

- :func:`mix_rows` patches each row of a batch at its own positions, so one
  forward pass covers every position of a hook (the batch holds the pairs once
  per position); :func:`patch_rows` is the same patch as a hook. Explain's runs
  (:mod:`bracketlens.algorithms.align`) apply :func:`mix_rows` directly and start
  after the patched component, from the base's cached residual stream;
- :class:`OrthogonalBasis` is a ``[d, k]`` matrix with orthonormal columns,
  trained through the patch for distributed alignment search.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from bracketlens.interventions.hooks import Hook, _mix


def patch_rows(
    source: Tensor,
    mask: Bool[Tensor, "batch pos"],
    *,
    head: int | None = None,
    basis: Float[Tensor, "d k"] | None = None,
) -> Hook:
    """A hook writing ``source`` into the activation where ``mask`` is set, row by row.

    Args:
        source: same layout and batch as the activation (``[batch, pos, ...]``).
        mask: which positions of each row to write.
        head: the head to write, for activations with a head axis.
        basis: write only the part in the span of these orthonormal columns.
    """

    def hook(act: Tensor, hook: object) -> Tensor:
        width = act.shape[1]
        src = source[:, :width].to(act.dtype)
        if head is None:
            return mix_rows(act, src, mask, basis)
        act = act.clone()
        act[:, :, head] = mix_rows(act[:, :, head], src[:, :, head], mask, basis)
        return act

    return hook


def mix_rows(
    old: Float[Tensor, "batch pos d"],
    new: Float[Tensor, "batch pos d"],
    mask: Bool[Tensor, "batch pos"],
    basis: Float[Tensor, "d k"] | None = None,
) -> Float[Tensor, "batch pos d"]:
    """``old`` with ``new`` written where ``mask`` is set (only its part in span(basis),
    if given): :func:`patch_rows`'s rule on tensors. Elsewhere the result is ``old``
    itself, so ``mix_rows(old, ...) - old`` is exactly 0 there."""
    where = mask[:, : old.shape[1], None]
    return torch.where(where, _mix(old, new, basis), old)


class OrthogonalBasis(nn.Module):
    """``k`` orthonormal columns in ``d`` dimensions, a trainable parametrisation.

    The columns are those of an orthogonal matrix kept orthogonal by
    :func:`torch.nn.utils.parametrizations.orthogonal`, so every gradient step
    stays on the set of valid subspaces.
    """

    def __init__(self, d: int, k: int, seed: int, init: Tensor | None = None) -> None:
        """A random subspace drawn from ``seed``, or ``init``'s columns (orthonormal, ``[d, k]``)."""
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.map = nn.Linear(k, d, bias=False)
        with torch.no_grad():
            self.map.weight.copy_(random_basis(d, k, gen) if init is None else init)
        # the parametrisation completes the k columns to a d x d base with random
        # columns from torch's global generator, and the gradient steps depend on that
        # base: draw it from ``seed`` too, or a fit depends on what ran before it
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            nn.utils.parametrizations.orthogonal(self.map)

    def forward(self) -> Float[Tensor, "d k"]:
        return self.map.weight


def random_basis(d: int, k: int, generator: torch.Generator) -> Float[Tensor, "d k"]:
    """``k`` orthonormal columns spanning a uniformly random subspace of dimension ``k``."""
    q, r = torch.linalg.qr(torch.randn(d, k, generator=generator))
    return q * torch.sign(torch.diagonal(r))
