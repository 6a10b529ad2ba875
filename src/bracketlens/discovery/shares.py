"""Discovery's patched runs on two cores: rows split between this process and a child.

A row's ``m`` under a circuit depends on that row alone, so the rows of
:meth:`.runs.Runs.m` can run in two processes (:func:`bracketlens.beside.in_two_shares`)
and be put back in order: the same numbers as one process computes, to float
rounding. Where no child can run (one core, a process that is itself a child), every
row runs here.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.beside import in_two_shares
from bracketlens.data.tokens import PAD
from bracketlens.discovery.runs import Runs


def m_in_two(
    runs: Runs,
    cut: Float[Tensor, "circuit receiver sender pos"],
    rows: Bool[Tensor, " row"] | None = None,
) -> Float[Tensor, "circuit row"]:
    """:meth:`.runs.Runs.m` of ``cut`` on ``rows`` (default all; NaN elsewhere), its rows
    split in two shares of about equal length that run at the same time."""
    n = len(runs.pairs)
    picked = torch.arange(n) if rows is None else rows.nonzero()[:, 0]
    lengths = (runs.pairs.clean != PAD).sum(-1).tolist()

    def share(items: list[int]) -> list[list[float]]:
        mask = torch.zeros(n, dtype=torch.bool)
        mask[items] = True
        # plain floats: a tensor view would carry its whole storage through the pipe
        return runs.m(cut, mask)[:, items].T.tolist()

    columns = in_two_shares(share, picked.tolist(), cost=lambda i: float(lengths[i]))
    out = torch.full((len(cut), n), float("nan"))
    if columns:
        out[:, picked] = torch.tensor(columns, dtype=out.dtype).T
    return out
