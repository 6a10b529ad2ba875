"""Layer 2 and the unembedding: bring both tests to position 0 and take their OR.

The course's story, second half: head 2.0 reads position 1 (the total-elevation
test), head 2.1 looks for a suffix that went positive anywhere; both write into
one ``unbalanced`` direction, and the unembedding calls a string unbalanced when
that direction holds anything at all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bracketlens.compiled.basis import D_MODEL, Residual, ln_scale, position_reader
from bracketlens.compiled.layer0 import D_HEAD, LN0
from bracketlens.data.tokens import N_CTX

READ_POSITION = 1
ELEVATION_GAIN = 1.0  # head 2.0 writes 1 (times the LayerNorm drift) for a non-level string
# Head 2.1 averages over at most 42 positions; one flagged position must still count 1.
NEGATIVE_GAIN = float(N_CTX)
# The OR's threshold on the ``unbalanced`` coordinate: balanced strings give 0, any
# failure at least ~0.97 (1 times the LayerNorm drift of at most 3%).
THRESHOLD = 0.5
LOGIT_GAIN = 20.0  # ~ +-20 logits at the decision's narrowest margin
READ_GAP = 40.0  # head 2.0's score gap between key 1 and every other key


def elevation_head(layout: Residual) -> dict[str, Tensor]:
    """Head 2.0: every query attends to position 1 and copies its ``nonzero`` test.

    Only position 0's output is ever read. The key side is the one-hot of position
    1 through :func:`position_reader`; the LayerNorm scale of a key drifts by at
    most 3% with the features written there, which leaves a gap of ~0.95*READ_GAP.
    """
    keys = torch.zeros(N_CTX, 1, dtype=torch.float64)
    keys[READ_POSITION, 0] = 1.0
    w_k, b_k = position_reader(layout, keys, LN0)
    out = _empty_head()
    out["W_K"][:, :1], out["b_K"][:1] = w_k, b_k
    out["b_Q"][0] = READ_GAP * math.sqrt(D_HEAD)  # a constant query: same at every position
    out["W_V"][:, 0] = layout["nonzero"] / LN0
    out["W_O"][0] = ELEVATION_GAIN * layout["unbalanced"]
    return out


def negative_head(layout: Residual) -> dict[str, Tensor]:
    """Head 2.1: zero QK, so it averages ``goes_positive`` over the non-pad positions.

    The mean is at least 1/42 when any suffix went positive; NEGATIVE_GAIN = 42 makes
    that at least 1 in ``unbalanced``.
    """
    out = _empty_head()
    out["W_V"][:, 0] = layout["goes_positive"] / LN0
    out["W_O"][0] = NEGATIVE_GAIN * layout["unbalanced"]
    return out


def unembedding(layout: Residual) -> tuple[Tensor, Tensor]:
    """The OR: logit(unbalanced) - logit(balanced) = 2 * LOGIT_GAIN * (u' - t').

    ``u'`` is the ``unbalanced`` coordinate after the final LayerNorm and ``t'`` the
    threshold after the same LayerNorm (the map u -> u' is increasing, so the
    order is kept): the bias puts the decision boundary at THRESHOLD.
    """
    w_u = torch.zeros(D_MODEL, 2, dtype=torch.float64)
    w_u[:, 0] = LOGIT_GAIN * layout["unbalanced"]
    w_u[:, 1] = -LOGIT_GAIN * layout["unbalanced"]
    # at position 0 the rest of the residual is the [start] and position-0 embeddings
    scale = ln_scale(D_MODEL + THRESHOLD**2)
    b_u = torch.tensor([-1.0, 1.0], dtype=torch.float64) * LOGIT_GAIN * THRESHOLD * scale
    return w_u, b_u


def _empty_head() -> dict[str, Tensor]:
    return {
        "W_Q": torch.zeros(D_MODEL, D_HEAD, dtype=torch.float64),
        "W_K": torch.zeros(D_MODEL, D_HEAD, dtype=torch.float64),
        "W_V": torch.zeros(D_MODEL, D_HEAD, dtype=torch.float64),
        "W_O": torch.zeros(D_HEAD, D_MODEL, dtype=torch.float64),
        "b_Q": torch.zeros(D_HEAD, dtype=torch.float64),
        "b_K": torch.zeros(D_HEAD, dtype=torch.float64),
    }
