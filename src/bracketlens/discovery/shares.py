"""Discovery's patched runs on two cores: rows split between this process and a child.

A row's ``m`` under a circuit depends on that row alone, so the rows of
:meth:`.runs.Runs.m` can run in two processes (:func:`bracketlens.beside.in_two_shares`)
and be put back in order. The rows go in chunks of similar length (a chunk's batches
are trimmed to its longest string), each chunk one item: a chunk runs in full batches
and gives the same numbers whichever process takes it, and where no child can run (one
core, a process that is itself a child), every chunk runs here.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from bracketlens.beside import in_two_shares
from bracketlens.data.tokens import PAD
from bracketlens.discovery.runs import Runs

CHUNK_ROWS = 256  # rows an item holds (2,000 pairs in both orders: 16 items)


def chunks_by_length(lengths: Tensor, rows: Tensor, size: int = CHUNK_ROWS) -> list[list[int]]:
    """``rows`` in chunks of at most ``size``, shortest strings first."""
    ordered = rows[torch.argsort(lengths[rows], stable=True)]
    return [chunk.tolist() for chunk in ordered.split(size)]


def m_in_two(
    runs: Runs,
    cut: Float[Tensor, "circuit receiver sender pos"],
    rows: Bool[Tensor, " row"] | None = None,
) -> Float[Tensor, "circuit row"]:
    """:meth:`.runs.Runs.m` of ``cut`` on ``rows`` (default all; NaN elsewhere), its rows
    in chunks of similar length that two processes take in turn."""
    n = len(runs.pairs)
    picked = torch.arange(n) if rows is None else rows.nonzero()[:, 0]
    lengths = (runs.pairs.clean != PAD).sum(-1)
    chunks = chunks_by_length(lengths, picked)

    def share(items: list[list[int]]) -> list[list[list[float]]]:
        done = []
        for chunk in items:
            mask = torch.zeros(n, dtype=torch.bool)
            mask[chunk] = True
            # plain floats: a tensor view would carry its whole storage through the pipe
            done.append(runs.m(cut, mask)[:, chunk].tolist())
        return done

    def cost(chunk: list[int]) -> float:
        return float(len(chunk) * lengths[chunk].max())

    out = torch.full((len(cut), n), float("nan"))
    for chunk, m in zip(chunks, in_two_shares(share, chunks, cost=cost), strict=True):
        out[:, chunk] = torch.tensor(m, dtype=out.dtype)
    return out
