"""The tallying head: v_L and v_R, and how they line up with MLP input directions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.layernorm import LayerNormFit, fit_layernorm
from bracketlens.circuits.heads import check_head, ov_matrix
from bracketlens.data.tokens import CLOSE, OPEN
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer


def token_embedding(model: BracketTransformer, char: str) -> Float[Tensor, " d_model"]:
    """The token embedding of ``"("`` or ``")"``."""
    if char not in ("(", ")"):
        raise BracketLensError(f"embedding is defined for '(' and ')', got {char!r}")
    return model.W_E[OPEN if char == "(" else CLOSE].detach()


@dataclass(frozen=True)
class TallyVectors:
    """What a layer-0 head writes for a ``(`` and for a ``)`` it attends to.

    Attributes:
        v_left: the head's output for ``(``: embedding -> linear ``ln1`` fit -> OV.
        v_right: the same for ``)``.
        cosine: cos(v_L, v_R); close to -1 when the head counts ``(`` minus ``)``.
        ln_fit: the pooled fit of layer 0's ``ln1`` used.
    """

    v_left: Float[Tensor, " d_model"]
    v_right: Float[Tensor, " d_model"]
    cosine: float
    ln_fit: LayerNormFit
    head: int


def tally_vectors(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    head: int,
    fit: LayerNormFit | None = None,
) -> TallyVectors:
    """v_L, v_R of a layer-0 head through the pooled linear fit of layer 0's ``ln1``."""
    check_head(model, 0, head)
    if fit is None:
        fit = fit_layernorm(model, tokens, "blocks.0.ln1", position=None)
    ov = ov_matrix(model, 0, head)
    # the fit maps x -> coef @ x (+ intercept, which is the same for both tokens)
    v_left = fit.coef @ token_embedding(model, "(") @ ov
    v_right = fit.coef @ token_embedding(model, ")") @ ov
    cos = torch.cosine_similarity(v_left, v_right, dim=0).item()
    return TallyVectors(v_left=v_left, v_right=v_right, cosine=cos, ln_fit=fit, head=head)


def mlp_input_cosines(
    model: BracketTransformer, v: Float[Tensor, " d_model"], layer: int
) -> Float[Tensor, " d_mlp"]:
    """Cosine similarity of ``v`` with each input direction (column of ``W_in``) of an MLP."""
    check_head(model, layer)
    w_in = model.W_in[layer].detach()
    # a neuron whose input weights are all zero has cosine 0 with everything
    return (v / v.norm()) @ (w_in / w_in.norm(dim=0, keepdim=True).clamp(min=1e-12))


def mean_squared_cosine_random(
    v: Float[Tensor, " d_model"], n_samples: int = 1000, seed: int = 0
) -> float:
    """Mean squared cosine of ``v`` with random unit vectors (expected ``1/d_model``)."""
    gen = torch.Generator().manual_seed(seed)
    samples = torch.randn(n_samples, v.shape[0], generator=gen)
    cos = (samples / samples.norm(dim=1, keepdim=True)) @ (v / v.norm())
    return cos.pow(2).mean().item()
