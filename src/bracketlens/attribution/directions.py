"""The unbalanced direction, after and before the final LayerNorm."""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.layernorm import LayerNormFit, fit_layernorm
from bracketlens.model.transformer import BracketTransformer


def unbalanced_direction_post_ln(model: BracketTransformer) -> Float[Tensor, " d_model"]:
    """``W_U[:, 0] - W_U[:, 1]``: dot product with it is logit(unbalanced) - logit(balanced)."""
    return model.W_U[:, 0] - model.W_U[:, 1]


def unbalanced_direction_pre_ln(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    fit: LayerNormFit | None = None,
) -> Float[Tensor, " d_model"]:
    """The unbalanced direction in the residual stream at position 0, before ``ln_final``.

    Pulls the post-LN direction back through a linear fit of ``ln_final`` at
    position 0 (fitted on ``tokens`` unless ``fit`` is given).
    """
    if fit is None:
        fit = fit_layernorm(model, tokens, "ln_final", position=0)
    return fit.pull_back(unbalanced_direction_post_ln(model))
