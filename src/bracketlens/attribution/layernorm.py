"""Linear fits of LayerNorms: the map from a LayerNorm's input to its output.

LayerNorm is not linear, but on the data a model sees its scale varies little,
so a least-squares affine fit explains almost all of it (r^2 close to 1). With
the fit, directions can be pulled back through a LayerNorm by a matrix transpose.
The fitted output is ``hook_normalized``, *after* the affine map (see
:mod:`bracketlens.model.transformer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from sklearn.linear_model import LinearRegression
from torch import Tensor

from bracketlens.activations import get_activations, layernorm_hook_names
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer


@dataclass(frozen=True)
class LayerNormFit:
    """A linear fit ``normalized ~ coef @ input + intercept`` of one LayerNorm.

    Attributes:
        regression: the fitted sklearn ``LinearRegression`` (with intercept).
        r2: coefficient of determination on the data it was fitted on.
        layernorm: which LayerNorm (``"ln_final"``, ``"blocks.L.ln1"``...).
        position: the sequence position fitted, or ``None`` for all positions pooled.
    """

    regression: LinearRegression
    r2: float
    layernorm: str
    position: int | None

    @property
    def coef(self) -> Float[Tensor, "d_out d_in"]:
        """The fitted linear map as a float32 tensor (sklearn's ``coef_``)."""
        return torch.from_numpy(np.asarray(self.regression.coef_, dtype=np.float32))

    def pull_back(self, direction: Float[Tensor, " d_out"]) -> Float[Tensor, " d_in"]:
        """The input direction whose dot product gives ``direction``'s after the LN."""
        return self.coef.T @ direction


def fit_layernorm(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layernorm: str = "ln_final",
    position: int | None = 0,
) -> LayerNormFit:
    """Fit a LayerNorm linearly at one position, or over all positions pooled.

    Pooling uses every position of ``tokens`` as given (padding included), as the
    course does.

    Raises:
        BracketLensError: unknown LayerNorm name or position out of range.
    """
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
    return fit_arrays(x.numpy(), y.numpy(), layernorm=layernorm, position=position)


def fit_arrays(
    x: np.ndarray, y: np.ndarray, *, layernorm: str, position: int | None
) -> LayerNormFit:
    """Least-squares affine fit of rows ``y`` on rows ``x``."""
    regression = LinearRegression().fit(x, y)
    return LayerNormFit(
        regression=regression,
        r2=float(regression.score(x, y)),
        layernorm=layernorm,
        position=position,
    )


def score_fit(
    model: BracketTransformer, fit: LayerNormFit, tokens: Int[Tensor, "batch seq"]
) -> float:
    """R^2 of a fit on other strings than those it was fitted on (held-out r^2)."""
    before, after = layernorm_hook_names(model, fit.layernorm)
    acts = get_activations(model, tokens, [before, after])
    x, y = acts[before], acts[after]
    if fit.position is None:
        x, y = x.flatten(0, 1), y.flatten(0, 1)
    else:
        x, y = x[:, fit.position], y[:, fit.position]
    return float(fit.regression.score(x.numpy(), y.numpy()))
