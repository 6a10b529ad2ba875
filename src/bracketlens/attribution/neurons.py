"""MLP outputs split by neuron, their projections, and what each neuron responds to.

Neuron ``i`` of an MLP writes ``post[b, s, i] * W_out[i, :]``; the MLP output is the
sum over neurons plus ``b_out``. Projected on a direction ``d``, that is
``post[b, s, i] * (W_out[i] @ d)``: projecting ``W_out`` first avoids ever building
the ``[batch, (seq,) neuron, d_model]`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.activations import get_activations, run_and_reduce
from bracketlens.errors import BracketLensError
from bracketlens.model.checks import check_head
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def out_by_neuron(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layer: int,
    position: int | None = None,
) -> Float[Tensor, "batch *seq neuron d_model"]:
    """Each neuron's output vector: ``[batch, seq, neuron, d_model]``, or at one position.

    Memory grows as batch x seq x d_mlp x d_model; prefer
    :func:`out_by_neuron_in_direction` when only a projection is needed.
    """
    check_head(model, layer)
    name = act_name("post", layer)
    post = get_activations(model, tokens, name)[name]  # [batch, seq, neuron]
    if position is not None:
        post = post[:, position]
    return post.unsqueeze(-1) * model.W_out[layer].detach()


def out_by_neuron_in_direction(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layer: int,
    direction: Float[Tensor, " d_model"],
    position: int,
    batch_size: int = DEFAULT_BATCH,
) -> Float[Tensor, "batch neuron"]:
    """Each neuron's output at ``position`` projected on ``direction``: ``[batch, neuron]``.

    Keeps only ``post[:, position]`` per batch, so memory grows as batch x d_mlp.
    """
    check_head(model, layer)
    weights = model.W_out[layer].detach() @ direction  # [neuron]: project W_out first
    name = act_name("post", layer)
    out = run_and_reduce(model, tokens, {name: [lambda a: a[:, position] * weights]}, batch_size)
    return out[name][0]


@dataclass(frozen=True)
class NeuronRank:
    """How strongly one neuron separates unbalanced from balanced strings."""

    name: str  # "layer.neuron"
    separation: float  # mean(unbalanced) - mean(balanced), in the projection's units
    effect_size: float  # separation / pooled standard deviation


def rank_neurons(
    contributions: Float[Tensor, "batch neuron"],
    balanced: Bool[Tensor, " batch"],
    layer: int,
) -> list[NeuronRank]:
    """Neurons ordered by how far apart their balanced and unbalanced means are."""
    if balanced.all() or not balanced.any():
        raise BracketLensError(
            "ranking neurons needs both balanced and unbalanced strings that start with '('; "
            "use more strings (e.g. --n 1000)"
        )
    bal, unbal = contributions[balanced], contributions[~balanced]
    sep = unbal.mean(0) - bal.mean(0)
    pooled = ((bal.var(0) + unbal.var(0)) / 2).sqrt().clamp(min=1e-8)
    ranks = [
        NeuronRank(f"{layer}.{i}", float(sep[i]), float(sep[i] / pooled[i]))
        for i in range(contributions.shape[1])
    ]
    return sorted(ranks, key=lambda r: -abs(r.separation))


R2_THRESHOLD = 0.5  # of the two-hinge fit: below it the response is not hinge-shaped
SIDE_RATIO = 1 / 3  # a side whose slope is below this share of the other's is "flat"
MIN_RANGE_SHARE = 0.05  # of the largest neuron's span in the layer: below it, "inactive"
KINDS = ("p > 1/2", "p < 1/2", "p != 1/2", "monotonic", "other", "inactive")


@dataclass(frozen=True)
class NeuronClass:
    """The shape of one neuron's response to the open proportion, with its evidence.

    Attributes:
        name: ``"layer.neuron"``.
        kind: one of :data:`KINDS`.
        rise_above: fitted change of the mean contribution from p = 1/2 to p = 1.
        rise_below: fitted change from p = 1/2 to p = 0.
        r2: weighted R^2 of the two-hinge fit.
        span: max - min of the mean contribution over p.
    """

    name: str
    kind: str
    rise_above: float
    rise_below: float
    r2: float
    span: float


def classify_neurons(
    contributions: Float[Tensor, "batch neuron"],
    open_proportion: Float[Tensor, " batch"],
    layer: int,
) -> list[NeuronClass]:
    """Classify neurons by how their mean contribution depends on the open proportion p.

    Average each neuron's contribution over strings with the same p, then fit the
    two-hinge model ``c(p) = a * max(p - 1/2, 0) + b * max(1/2 - p, 0) + c0`` by
    least squares weighted by strings per p. With ``rise_above = a/2`` and
    ``rise_below = b/2``: active when p > 1/2 if the rise below is under
    :data:`SIDE_RATIO` of the rise above (and the mirror case for p < 1/2); a
    |p - 1/2| detector (``"p != 1/2"``) if both rise, in the same direction;
    ``"monotonic"`` if they rise in opposite directions; ``"other"`` if the fit's
    R^2 is under :data:`R2_THRESHOLD`; ``"inactive"`` if the neuron's span is under
    :data:`MIN_RANGE_SHARE` of the layer's largest. Use strings starting with ``(``.

    Provenance: the criterion first fixed, before looking at the course's named
    neurons, fitted each hinge alone and required R^2 >= 0.8; it found the right
    best shape for all seven named neurons but called five of them "other" (R^2
    0.61-0.75), because real neurons respond to both sides with unequal slopes. This
    two-hinge criterion replaced it after that look.
    """
    p_values, inverse, counts = np.unique(
        np.round(open_proportion.numpy(), 4), return_inverse=True, return_counts=True
    )
    sums = torch.zeros(len(p_values), contributions.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(inverse.reshape(-1)), contributions.double())
    means = sums.numpy() / counts[:, None]  # [p, neuron]
    design = np.stack(
        [np.maximum(p_values - 0.5, 0), np.maximum(0.5 - p_values, 0), np.ones_like(p_values)], 1
    )
    w = np.sqrt(counts)[:, None]
    coef, *_ = np.linalg.lstsq(design * w, means * w, rcond=None)
    resid = means - design @ coef
    centred = means - np.average(means, axis=0, weights=counts)
    total = np.sum(counts[:, None] * centred**2, axis=0)
    r2 = 1 - np.sum(counts[:, None] * resid**2, axis=0) / np.where(total > 0, total, 1)
    spans = means.max(0) - means.min(0)
    return [
        NeuronClass(
            f"{layer}.{i}",
            _kind(coef[0, i] / 2, coef[1, i] / 2, r2[i], spans[i] / max(spans.max(), 1e-12)),
            float(coef[0, i] / 2),
            float(coef[1, i] / 2),
            float(r2[i]),
            float(spans[i]),
        )
        for i in range(contributions.shape[1])
    ]


def _kind(above: float, below: float, r2: float, span_share: float) -> str:
    if span_share < MIN_RANGE_SHARE:
        return "inactive"
    if r2 < R2_THRESHOLD:
        return "other"
    if abs(below) < SIDE_RATIO * abs(above):
        return "p > 1/2"
    if abs(above) < SIDE_RATIO * abs(below):
        return "p < 1/2"
    return "p != 1/2" if above * below > 0 else "monotonic"


__all__ = [
    "NeuronClass",
    "NeuronRank",
    "classify_neurons",
    "out_by_neuron",
    "out_by_neuron_in_direction",
    "rank_neurons",
]
