"""Embeddings and layer 0: the tally, then the per-position threshold tests.

The course's story, first half: a layer-0 head computes, at every position i, the
mean of +1 ("(") and -1 (")") over the suffix from i, i.e. ``S(i) / m_i``; MLP 0
turns it into two yes/no features, "this suffix goes positive" (a negative
failure, read right to left) and "this suffix is not level" (at position 1: the
total-elevation failure).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.compiled.basis import (
    D_MODEL,
    POS_NORM,
    TOKEN_NORM,
    Residual,
    ln_scale,
    position_reader,
)
from bracketlens.data.tokens import CLOSE, END, N_CTX, OPEN, PAD, START

D_HEAD = 28
# Attention score gap between the keys a tally head attends to and the others.
# exp(-40) * 41 keys leaves ~2e-16 of the attention on the wrong keys.
SCORE_GAP = 40.0
# Which query positions each layer-0 head serves. One 28-wide head cannot hold the
# rank-41 pattern "key j >= query i" for all queries; each half needs rank <= 23.
SERVED = ((1, 20), (21, N_CTX - 1))
# The smallest non-zero |S(i)/m_i| is 1/41 (|S| >= 1, m_i <= 41 keys); MLP 0's ramps
# start half-way there and reach 1 well before it.
MIN_TALLY = 1.0 / (N_CTX - 1)
RAMP_START = MIN_TALLY / 2
RAMP_SLOPE = 4.0 / MIN_TALLY  # the ramp is 1/4 of MIN_TALLY wide

# LayerNorm multiplier at layer 0 (every embedding has squared norm r^2 + rho^2).
LN0 = ln_scale(TOKEN_NORM**2 + POS_NORM**2)


def embeddings(
    layout: Residual,
) -> tuple[Float[Tensor, "d_vocab d_model"], Float[Tensor, "n_ctx d_model"]]:
    """Token and position embeddings: equal norms, mutually orthogonal, mean zero.

    Tokens sit on their own directions; "(" and ")" are opposite along ``paren`` so
    that one value vector gives +1 and -1. Positions are the simplex vertices.
    """
    w_e = torch.zeros(5, D_MODEL, dtype=torch.float64)
    w_e[OPEN] = TOKEN_NORM * layout["paren"]
    w_e[CLOSE] = -TOKEN_NORM * layout["paren"]
    w_e[START] = TOKEN_NORM * layout["start"]
    w_e[END] = TOKEN_NORM * layout["end"]
    w_e[PAD] = TOKEN_NORM * layout["pad"]
    return w_e, layout.positions.clone()


def tally_score_tables(
    first: int, last: int
) -> tuple[Float[Tensor, "n_ctx k"], Float[Tensor, "n_ctx k"]]:
    """Query and key feature tables whose product is the tally head's score table.

    A served query i scores 0 on keys j >= i and -SCORE_GAP on the rest; any other
    query scores 0 on key 0 ([start], whose value is 0) and -SCORE_GAP elsewhere.
    Key features: ``[j >= s]`` for each served s, ``[j == 0]``, and a constant.
    """
    served = list(range(first, last + 1))
    k = len(served) + 2
    keys = torch.zeros(N_CTX, k, dtype=torch.float64)
    j = torch.arange(N_CTX)
    for col, s in enumerate(served):
        keys[:, col] = (j >= s).double()
    keys[0, k - 2] = 1.0  # [j == 0]
    keys[:, k - 1] = 1.0  # constant
    queries = torch.zeros(N_CTX, k, dtype=torch.float64)
    for i in range(N_CTX):
        col = served.index(i) if i in served else k - 2
        queries[i, col], queries[i, k - 1] = SCORE_GAP, -SCORE_GAP
    return queries, keys


def tally_heads(layout: Residual, tally_gain: float) -> dict[str, Tensor]:
    """Heads 0.0 and 0.1: the suffix mean S(i)/m_i at the positions each serves.

    At a served position i the head attends uniformly to the keys i..end (the
    parens of the suffix and [end], value 0), so it writes ``S(i)/(n + 2 - i)``
    into ``tally``. Elsewhere it attends to [start] and writes 0. Every position is
    served by exactly one head, so their sum is the tally everywhere.
    """
    w = {name: torch.zeros(2, D_MODEL, D_HEAD, dtype=torch.float64) for name in "QKV"}
    b = {name: torch.zeros(2, D_HEAD, dtype=torch.float64) for name in "QK"}
    w_o = torch.zeros(2, D_HEAD, D_MODEL, dtype=torch.float64)
    for head, (first, last) in enumerate(SERVED):
        queries, keys = tally_score_tables(first, last)
        # the forward divides scores by sqrt(d_head); the query side undoes it
        wq, bq = position_reader(layout, queries * math.sqrt(D_HEAD), LN0)
        wk, bk = position_reader(layout, keys, LN0)
        w["Q"][head, :, : wq.shape[1]], b["Q"][head, : wq.shape[1]] = wq, bq
        w["K"][head, :, : wk.shape[1]], b["K"][head, : wk.shape[1]] = wk, bk
        # value: +1 for "(", -1 for ")", 0 for [start], [end], [pad]
        w["V"][head, :, 0] = layout["paren"] / (LN0 * TOKEN_NORM)
        w_o[head, 0] = tally_gain * layout["tally"]
    return {
        "W_Q": w["Q"],
        "W_K": w["K"],
        "W_V": w["V"],
        "W_O": w_o,
        "b_Q": b["Q"],
        "b_K": b["K"],
    }


def threshold_mlp(layout: Residual, tally_gain: float, d_mlp: int) -> dict[str, Tensor]:
    """MLP 0: from the tally to "goes positive" and "not level", each 0 or 1.

    Four neurons, two clipped ramps ``relu(x) - relu(x - 1)``:

    - neurons 0, 1: ``S(i) > 0``, the suffix from i has more "(" than ")". Writes
      ``goes_positive`` (the negative failure, if anywhere) and ``nonzero``.
    - neurons 2, 3: ``S(i) < 0``. Writes ``nonzero`` only; with neurons 0, 1 that
      is the zero test of the suffix sum, which at position 1 is the total
      elevation test. Head 2.0 reads it there.

    The LayerNorm before the MLP scales the tally by 0.99..1 (its norm varies with
    the tally); the ramps start at half the smallest non-zero tally, so that drift
    never moves a decision.
    """
    w_in = torch.zeros(D_MODEL, d_mlp, dtype=torch.float64)
    b_in = torch.zeros(d_mlp, dtype=torch.float64)
    w_out = torch.zeros(d_mlp, D_MODEL, dtype=torch.float64)
    read = layout["tally"] * (RAMP_SLOPE / (LN0 * tally_gain))
    for sign, first in ((1.0, 0), (-1.0, 2)):
        writes = layout["nonzero"] + (layout["goes_positive"] if sign > 0 else 0.0)
        for offset, out_sign in ((0.0, 1.0), (1.0, -1.0)):  # relu(x) - relu(x - 1)
            w_in[:, first + int(offset)] = sign * read
            b_in[first + int(offset)] = -RAMP_SLOPE * RAMP_START - offset
            w_out[first + int(offset)] = out_sign * writes
    return {"W_in": w_in, "b_in": b_in, "W_out": w_out}
