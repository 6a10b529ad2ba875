"""Counterfactual pairs: a balanced string and one edit of it that unbalances it.

Three edits, each giving a different failure:

- ``open_to_close``: one '(' becomes ')' (total elevation off, no prefix negative);
- ``close_to_open``: one ')' becomes '(' (total elevation off and, read from the
  right, a suffix with more '(' than ')': both failures);
- ``swap_block``: the outer parentheses of one top-level block swap, "(A)" to ")A("
  (total elevation unchanged, a prefix goes negative). Swapping an arbitrary
  adjacent "()" is not used: "(())" to "()()" stays balanced.

Every pair is used in both orders, so each (balanced, edited) pair gives two rows:
clean balanced with the edit as counterfactual, and the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import tokenize
from bracketlens.errors import BracketLensError

EDITS = ("open_to_close", "close_to_open", "swap_block")
MIN_PAIRS = 200


@dataclass(frozen=True)
class Pairs:
    """Rows of (clean, counterfactual) strings; row ``i`` and ``i + n_pairs`` are one
    pair in its two orders.

    Attributes:
        clean: clean tokens, ``[row, seq]``.
        corrupt: counterfactual tokens, the same lengths.
        sign: +1 where the clean string is balanced, -1 where not (the metric's sign).
        edit: index into :data:`EDITS` of each row's edit.
        n_dropped: strings that gave no pair (unbalanced, or no edit possible).
    """

    clean: Int[Tensor, "row seq"]
    corrupt: Int[Tensor, "row seq"]
    sign: Float[Tensor, " row"]
    edit: Int[Tensor, " row"]
    n_dropped: int

    @property
    def n_pairs(self) -> int:
        return len(self.clean) // 2

    def __len__(self) -> int:
        return len(self.clean)


def top_level_blocks(s: str) -> list[tuple[int, int]]:
    """The (start, end) indices of the outer parentheses of each top-level block."""
    blocks, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if depth == 0:
            start = i
        depth += 1 if c == "(" else -1
        if depth == 0:
            blocks.append((start, i))
    return blocks


def edit(s: str, kind: str, rng: np.random.Generator) -> str:
    """``s`` with one edit of ``kind`` at a random admissible place (``s`` is balanced
    and not empty, so every kind has one)."""
    chars = list(s)
    if kind == "swap_block":
        start, end = top_level_blocks(s)[rng.integers(len(top_level_blocks(s)))]
        chars[start], chars[end] = ")", "("
        return "".join(chars)
    old, new = ("(", ")") if kind == "open_to_close" else (")", "(")
    where = [i for i, c in enumerate(s) if c == old]
    chars[where[rng.integers(len(where))]] = new
    return "".join(chars)


def make_pairs(data: BracketDataset, seed: int = 0, minimum: int = MIN_PAIRS) -> Pairs:
    """One pair per balanced non-empty string of ``data``, the edit kinds in turn.

    Raises:
        BracketLensError: fewer than ``minimum`` usable pairs.
    """
    rng = np.random.default_rng(seed)
    usable = [s for s, ok in zip(data.strings, data.labels.tolist(), strict=True) if ok and s]
    n_dropped = len(data) - len(usable)
    if len(usable) < minimum:
        raise BracketLensError(
            f"circuit discovery needs at least {minimum} balanced, non-empty strings to "
            f"build pairs from; got {len(usable)} of {len(data)} ({n_dropped} dropped); "
            "use more strings (e.g. --n 4000)"
        )
    kinds = [i % len(EDITS) for i in range(len(usable))]
    edited = [edit(s, EDITS[k], rng) for s, k in zip(usable, kinds, strict=True)]
    clean = tokenize(usable + edited)
    corrupt = tokenize(edited + usable, pad_to=clean.shape[1])
    n = len(usable)
    sign = torch.cat([torch.ones(n), -torch.ones(n)])
    kind = torch.tensor(kinds * 2)
    return Pairs(clean, corrupt, sign, kind, n_dropped)


def halves(pairs: Pairs, seed: int) -> tuple[Tensor, Tensor]:
    """Row masks of the two halves (a pair's two orders stay together): where the
    circuit is chosen, and where it is scored."""
    n = pairs.n_pairs
    chosen = torch.zeros(n, dtype=torch.bool)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    chosen[order[: n // 2]] = True
    first = torch.cat([chosen, chosen])
    return first, ~first
