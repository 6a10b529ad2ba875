"""What a ``--weights`` value names: the bundled default, a checkpoint file, or ``compiled``.

The one place where the hand-built model's name is resolved: the CLI and the library's
:func:`load_model` share it, and :mod:`bracketlens.model` only reads files.
"""

from __future__ import annotations

import os

from bracketlens.model.checkpoint import read_model, read_sidecar
from bracketlens.model.transformer import BracketTransformer

# A bare name (no path separator, no extension) that builds a model instead of reading one.
COMPILED = "compiled"


def load_model(
    weights: str | os.PathLike[str] | None = None, *, allow_nonfinite: bool = False
) -> BracketTransformer:
    """Load a model ready for analysis: eval mode, gradients off.

    Args:
        weights: ``None`` for the bundled default; ``"compiled"`` for the hand-built
            model of :mod:`bracketlens.compiled` (a file of that name is read only when
            written with a separator, ``./compiled``); a ``.pt`` TransformerLens state
            dict (e.g. the course checkpoint); or one of our ``.safetensors`` checkpoints.
        allow_nonfinite: load weights holding NaN or infinity (refused by default:
            such a model's predictions mean nothing).

    Raises:
        BracketLensError: missing file, unknown format, a bad config, weights of the
            wrong shape or type, or non-finite weights.
    """
    if isinstance(weights, str) and weights == COMPILED:
        from bracketlens.compiled.build import build_compiled  # builds in milliseconds

        return build_compiled()
    return read_model(weights, allow_nonfinite=allow_nonfinite)


def is_hand_built(weights: str | None) -> bool:
    """Whether ``weights`` names a hand-built model: ``compiled``, or a file whose sidecar
    says it was written by ``bracketlens compile``."""
    if weights is None:
        return False
    if weights == COMPILED:
        return True
    try:
        record = read_sidecar(weights)
    except (OSError, ValueError):  # not ours to judge here: loading the weights checks them
        return False
    return isinstance(record, dict) and record.get("hand_built") is True
