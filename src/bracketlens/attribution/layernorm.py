"""Linear fits of LayerNorms from a model's activations, through the one fitter.

Every fit accumulates float64 sufficient statistics batch by batch
(:class:`bracketlens.layernorm_fit.FitMoments`), so no activation is kept and a
held-out score needs only the other strings' moments.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from bracketlens.activations import layernorm_hook_names
from bracketlens.errors import BracketLensError
from bracketlens.layernorm_fit import FitMoments, LayerNormFit
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def _moments(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layernorm: str,
    position: int | None,
    batch_size: int = DEFAULT_BATCH,
) -> FitMoments:
    """Moments of a LayerNorm's input and output at ``position`` (or every position)."""
    before, after = layernorm_hook_names(model, layernorm)
    if position is not None and not -tokens.shape[1] <= position < tokens.shape[1]:
        raise BracketLensError(
            f"position {position} is outside the {tokens.shape[1]} positions of these tokens"
        )
    d = model.cfg.d_model
    moments = FitMoments(d, d)
    pending: dict[str, Tensor] = {}

    def keep_x(act: Tensor, hook: object) -> None:
        pending["x"] = act

    def add(y: Tensor, hook: object) -> None:
        x = pending.pop("x")
        if position is None:
            moments.add(x.flatten(0, 1), y.flatten(0, 1))
        else:
            moments.add(x[:, position], y[:, position])

    # batches at the tokens' full width: a pooled fit takes every position as given
    with torch.no_grad(), model.hooks(fwd_hooks=[(before, keep_x), (after, add)]):
        for start in range(0, len(tokens), batch_size):
            model(tokens[start : start + batch_size])
    return moments


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
    moments = _moments(model, tokens, layernorm, position)
    return moments.fit(layernorm=layernorm, position=position)


def fit_arrays(
    x: np.ndarray, y: np.ndarray, *, layernorm: str, position: int | None
) -> LayerNormFit:
    """Least-squares affine fit of rows ``y`` on rows ``x``."""
    moments = FitMoments(x.shape[1], y.shape[1])
    moments.add(torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)))
    return moments.fit(layernorm=layernorm, position=position)


def score_fit(
    model: BracketTransformer, fit: LayerNormFit, tokens: Int[Tensor, "batch seq"]
) -> float:
    """R^2 of a fit on other strings than those it was fitted on (held-out r^2)."""
    return _moments(model, tokens, fit.layernorm, fit.position).score(fit)


__all__ = ["LayerNormFit", "fit_arrays", "fit_layernorm", "score_fit"]
