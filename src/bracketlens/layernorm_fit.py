"""The one LayerNorm fitter: least-squares fits from float64 sufficient statistics.

LayerNorm is not linear, but on the data a model sees its scale varies little,
so a least-squares affine fit explains almost all of it (r^2 close to 1). With
the fit, directions can be pulled back through a LayerNorm by a matrix transpose.
The fitted output is ``hook_normalized``, *after* the affine map (see
:mod:`bracketlens.model.layers`).


An affine least-squares fit ``y ~ coef @ x + intercept`` depends on the data only
through the row count, the sums of ``x`` and ``y``, ``X^T X``, ``X^T Y`` and the
sums of squares of ``y`` (for r^2). :class:`FitMoments` accumulates those in
float64 while the forward pass runs, so a fit over 100,000 strings (or every
position of them) keeps a few ``d_model x d_model`` matrices instead of the rows.

Moments are taken about a shift (the first batch's means): centring afterwards
then subtracts two numbers of similar size only when the data are far from the
shift, which keeps float64 cancellation far below float32 noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.errors import BracketLensError

if TYPE_CHECKING:  # the course's own fit (bracketlens.arena) keeps sklearn's type
    from sklearn.linear_model import LinearRegression


class AffineMap:
    """A fitted map ``y = x @ coef_.T + intercept_``, with sklearn's attribute names.

    The library's fits never import sklearn (a second of start-up for every command);
    the names match ``LinearRegression``'s so that code written against the course's
    sklearn fit reads either.
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef_ = coef  # [d_out, d_in]
        self.intercept_ = intercept  # [d_out]
        self.n_features_in_ = coef.shape[1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The fitted values for rows ``x`` (``[rows, d_in]``)."""
        return np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_


@dataclass(frozen=True)
class LayerNormFit:
    """A linear fit ``normalized ~ coef @ input + intercept`` of one LayerNorm.

    Attributes:
        regression: the fitted map (:class:`AffineMap`; sklearn's ``LinearRegression``
            for the course's own fit in :mod:`bracketlens.arena`).
        r2: coefficient of determination on the data it was fitted on.
        layernorm: which LayerNorm (``"ln_final"``, ``"blocks.L.ln1"``...).
        position: the sequence position fitted, or ``None`` for all positions pooled.
    """

    regression: AffineMap | LinearRegression
    r2: float
    layernorm: str
    position: int | None

    @property
    def coef(self) -> Float[Tensor, "d_out d_in"]:
        """The fitted linear map as a float32 tensor (``coef_``)."""
        return torch.from_numpy(np.asarray(self.regression.coef_, dtype=np.float32))

    def pull_back(self, direction: Float[Tensor, " d_out"]) -> Float[Tensor, " d_in"]:
        """The input direction whose dot product gives ``direction``'s after the LN."""
        return self.coef.T @ direction


class FitMoments:
    """Sufficient statistics of an affine least-squares fit of rows ``y`` on rows ``x``."""

    def __init__(self, d_in: int, d_out: int) -> None:
        self.n = 0.0
        self.shift_x = np.zeros(d_in)
        self.shift_y = np.zeros(d_out)
        self.sx = np.zeros(d_in)
        self.sy = np.zeros(d_out)
        self.sxx = np.zeros((d_in, d_in))
        self.sxy = np.zeros((d_in, d_out))
        self.syy = np.zeros(d_out)  # sums of squares of each output: all r^2 needs
        self.eps = 0.0  # machine epsilon of the rows added (float32 for activations)

    def add(self, x: Tensor, y: Tensor, weight: Tensor | None = None) -> None:
        """Add rows ``x [rows, d_in]``, ``y [rows, d_out]``, each counted ``weight`` times."""
        self.eps = max(self.eps, torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0)
        xs, ys = x.detach().double(), y.detach().double()
        if self.n == 0 and len(xs):
            self.shift_x = xs.mean(0).numpy()
            self.shift_y = ys.mean(0).numpy()
        xs = xs - torch.from_numpy(self.shift_x)
        ys = ys - torch.from_numpy(self.shift_y)
        if weight is None:  # every row once: no products with a weight of 1
            wx, wy, sq, self.n = xs, ys, ys.pow(2), self.n + len(xs)
        else:
            w = weight.double()[:, None]
            wx, wy, sq, self.n = xs * w, ys * w, ys.pow(2) * w, self.n + float(w.sum())
        self.sx += wx.sum(0).numpy()
        self.sy += wy.sum(0).numpy()
        self.sxx += (wx.T @ xs).numpy()
        self.sxy += (wx.T @ ys).numpy()
        self.syy += sq.sum(0).numpy()

    def merged(self, other: FitMoments) -> FitMoments:
        """The moments of both sets of rows together."""
        out = FitMoments(len(self.sx), len(self.sy))
        base = self if self.n else other
        # re-express both about one shift, then add
        out.shift_x, out.shift_y = base.shift_x.copy(), base.shift_y.copy()
        out.eps = max(self.eps, other.eps)
        for m in (self, other):
            dx, dy = m.shift_x - out.shift_x, m.shift_y - out.shift_y
            out.n += m.n
            out.sx += m.sx + m.n * dx
            out.sy += m.sy + m.n * dy
            out.sxx += m.sxx + np.outer(m.sx, dx) + np.outer(dx, m.sx) + m.n * np.outer(dx, dx)
            out.sxy += m.sxy + np.outer(m.sx, dy) + np.outer(dx, m.sy) + m.n * np.outer(dx, dy)
            out.syy += m.syy + 2 * m.sy * dy + m.n * dy**2
        return out

    def _centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.n < 2:
            raise BracketLensError("a LayerNorm fit needs at least two rows of data")
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.sxx - self.n * np.outer(mx, mx)
        cxy = self.sxy - self.n * np.outer(mx, my)
        cyy = self.syy - self.n * my**2
        return mx, my, cxx, cxy, cyy

    def fit(self, *, layernorm: str, position: int | None) -> LayerNormFit:
        """The least-squares fit (minimum-norm where ``x`` is rank-deficient) and its r^2."""
        mx, my, cxx, cxy, cyy = self._centred()
        if not (np.isfinite(cxx).all() and np.isfinite(cxy).all()):
            raise BracketLensError(
                f"cannot fit {layernorm}: the model's activations are not finite (NaN or inf) "
                "on these strings; the analysis needs a model with finite weights"
            )
        # Minimum-norm least squares through the eigenvalues of X^T X (the squared
        # singular values of the centred rows), dropping singular values below
        # 10 eps (of the rows' dtype) times the largest: float32 rows that span fewer
        # than d_in dimensions (layer 0's input: embeddings + positions) still vary by
        # rounding in the rest, and fitting that noise gives arbitrary, huge
        # coefficients there (sklearn's fit keeps them: its coefficients on such rows
        # reach ~1,000, ours stay O(1), and the fitted values agree).
        eigval, eigvec = np.linalg.eigh(cxx)
        sing = np.sqrt(np.clip(eigval, 0.0, None))
        keep = sing > 10 * (self.eps or np.finfo(np.float64).eps) * sing.max()
        inverse = (eigvec[:, keep] / eigval[keep]) @ eigvec[:, keep].T
        beta = inverse @ cxy  # [d_in, d_out]
        regression = AffineMap(beta.T.copy(), (my + self.shift_y) - beta.T @ (mx + self.shift_x))
        ss_res = cyy - np.einsum("io,io->o", beta, cxy)
        return LayerNormFit(
            regression=regression,
            r2=_r2(ss_res, cyy),
            layernorm=layernorm,
            position=position,
        )

    def score(self, fit: LayerNormFit) -> float:
        """r^2 of ``fit`` on these rows (sklearn's ``score``, from the moments alone)."""
        coef = np.asarray(fit.regression.coef_, dtype=np.float64)  # [d_out, d_in]
        intercept = np.asarray(fit.regression.intercept_, dtype=np.float64)
        # residual r = y' - coef @ x' - c with x', y' the shifted rows
        c = intercept + coef @ self.shift_x - self.shift_y
        ss_res = (
            self.syy
            - 2 * np.einsum("oi,io->o", coef, self.sxy)
            - 2 * c * self.sy
            + np.einsum("oi,ij,oj->o", coef, self.sxx, coef)
            + 2 * c * (coef @ self.sx)
            + self.n * c**2
        )
        return _r2(ss_res, self._centred()[4])


def _r2(ss_res: np.ndarray, ss_tot: np.ndarray) -> float:
    """sklearn's ``r2_score`` averaged uniformly over outputs (constant outputs: 1 or 0)."""
    ss_res = np.maximum(ss_res, 0.0)
    constant = ss_tot <= 0
    safe = np.where(constant, 1.0, ss_tot)
    per_output = np.where(constant, np.where(ss_res <= 0, 1.0, 0.0), 1 - ss_res / safe)
    return float(per_output.mean())


def pooled(moments: list[FitMoments], groups: list[int] | None = None) -> FitMoments:
    """The moments of the chosen groups together (every group when ``groups`` is None)."""
    chosen = range(len(moments)) if groups is None else groups
    out = FitMoments(*moments[0].sxy.shape)
    for g in chosen:
        if not 0 <= g < len(moments):
            raise BracketLensError(f"no group {g}: the pass has groups 0..{len(moments) - 1}")
        out = out.merged(moments[g])
    return out
