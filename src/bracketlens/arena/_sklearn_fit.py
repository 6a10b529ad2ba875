"""The course's own LayerNorm fit: sklearn's ``LinearRegression`` on cached float32 rows.

The library fits LayerNorms from float64 moments (:mod:`bracketlens.layernorm_fit`).
Where a LayerNorm's inputs span fewer dimensions than ``d_model`` (layer 0: embedding
plus position), least squares leaves the coefficients off that span free: sklearn
fills them with fitted float32 rounding noise, the moment fit with zeros. Fitted
values agree; coefficients there do not. The course's exercises compare a learner's
sklearn fit coefficient by coefficient, so the course API keeps the course's fit.
"""

from __future__ import annotations

from jaxtyping import Int
from sklearn.linear_model import LinearRegression
from torch import Tensor

from bracketlens.activations import get_activations, layernorm_hook_names
from bracketlens.errors import BracketLensError
from bracketlens.layernorm_fit import LayerNormFit
from bracketlens.model.transformer import BracketTransformer


def course_ln_fit(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layernorm: str = "ln_final",
    position: int | None = 0,
) -> LayerNormFit:
    """``LinearRegression().fit`` of the LayerNorm's output on its input, as the course fits."""
    before, after = layernorm_hook_names(model, layernorm)
    if position is not None and not -tokens.shape[1] <= position < tokens.shape[1]:
        raise BracketLensError(
            f"position {position} is outside the {tokens.shape[1]} positions of these tokens"
        )
    acts = get_activations(model, tokens, [before, after])
    x, y = acts[before], acts[after]
    if position is None:
        x, y = x.flatten(0, 1), y.flatten(0, 1)
    else:
        x, y = x[:, position], y[:, position]
    regression = LinearRegression().fit(x.numpy(), y.numpy())
    r2 = float(regression.score(x.numpy(), y.numpy()))
    return LayerNormFit(regression=regression, r2=r2, layernorm=layernorm, position=position)
