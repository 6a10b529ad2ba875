"""The residual stream of the compiled model: which direction carries what.

Every direction is a column of a Helmert basis, so all of them are orthonormal and
orthogonal to the all-ones vector. That is what makes layer 0's LayerNorm an exact
constant scaling: centring removes nothing, and the embeddings of every
(token, position) pair have the same norm because token and position directions
are orthogonal and each family has equal norms.

Positions are the 42 vertices of a regular simplex in 41 dimensions. Their Gram
matrix is ``rho^2 * (42/41) * (I - 1/42)``, so the one-hot code of a position is an
*affine* function of its embedding (:func:`position_reader`): any function of the
query and key positions that a head needs is then one table, factored exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.data.tokens import N_CTX

D_MODEL = 56
N_POS_DIMS = N_CTX - 1  # a simplex of 42 vertices spans 41 dimensions
# Norms of the embeddings: token r and position rho with r^2 + rho^2 = d_model, so
# that layer 0's LayerNorm divides by almost exactly 1.
TOKEN_NORM = math.sqrt(8.0)
POS_NORM = math.sqrt(D_MODEL - 8.0)


def helmert(n: int) -> Float[Tensor, "n n_minus_1"]:
    """Orthonormal basis (columns) of the vectors in R^n orthogonal to all-ones.

    Column k is ``(1, ..., 1, -(k+1), 0, ..., 0) / sqrt((k+1)(k+2))``.
    """
    basis = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -float(k)
        basis[:, k - 1] /= math.sqrt(k * (k + 1))
    return basis


# Residual columns after the 41 position dimensions, one per named feature.
_FEATURES = (
    "paren",  # token: +1 for "(", -1 for ")": what the tally heads average
    "start",  # token [start]
    "end",  # token [end]
    "pad",  # token [pad]
    "tally",  # layer 0 heads: mean of +-1 over the suffix, S(i)/m_i
    "goes_positive",  # MLP 0: the suffix from here has more "(" than ")"
    "nonzero",  # MLP 0: the suffix from here is not level (read at position 1)
    "unbalanced",  # layer 2 heads: evidence against balance, read by the unembedding
)


@dataclass(frozen=True)
class Residual:
    """The named directions of the residual stream, float64 ``[d_model]`` each."""

    positions: Float[Tensor, "n_ctx d_model"]  # the embedding of each position
    features: dict[str, Float[Tensor, " d_model"]]

    def __getitem__(self, name: str) -> Float[Tensor, " d_model"]:
        return self.features[name]

    @property
    def unused(self) -> int:
        """How many dimensions (orthogonal to all-ones) nothing writes to."""
        return D_MODEL - 1 - N_POS_DIMS - len(self.features)


def residual_layout() -> Residual:
    """The directions, fixed: a Helmert basis of R^56, positions first."""
    basis = helmert(D_MODEL)  # [56, 55]
    pos_basis = basis[:, :N_POS_DIMS]
    # simplex vertex i has coordinates Helmert_42[i, :] (the centred one-hot e_i - 1/42)
    vertices = helmert(N_CTX) * math.sqrt(N_CTX / N_POS_DIMS)  # unit norm rows
    positions = POS_NORM * vertices @ pos_basis.T
    features = {name: basis[:, N_POS_DIMS + i] for i, name in enumerate(_FEATURES)}
    return Residual(positions=positions, features=features)


def position_reader(
    layout: Residual, table: Float[Tensor, "n_ctx k"], ln_scale: float
) -> tuple[Float[Tensor, "d_model k"], Float[Tensor, " k"]]:
    """Weight and bias mapping a LayerNorm output at position i to ``table[i]``.

    The one-hot code of position i is ``(41/42) p_i.p_j / rho^2 + 1/42`` over j (the
    simplex Gram matrix), so ``table[i] = sum_j onehot_i[j] table[j]`` is affine in
    ``p_i``. ``ln_scale`` is what the LayerNorm multiplies the residual by there.
    Exact when the LayerNorm scale is ``ln_scale``; otherwise the non-constant part
    is scaled by the ratio, which the callers' margins allow for.
    """
    table = table.to(torch.float64)
    gram_to_onehot = (N_POS_DIMS / N_CTX) / POS_NORM**2
    weight = layout.positions.T @ table * (gram_to_onehot / ln_scale)
    bias = table.mean(0)  # sum_j table[j] / 42
    return weight, bias


def ln_scale(sq_norm: float, eps: float = 1e-5) -> float:
    """What a LayerNorm (weight 1, bias 0) multiplies a centred vector of ``sq_norm`` by."""
    return 1.0 / math.sqrt(sq_norm / D_MODEL + eps)
