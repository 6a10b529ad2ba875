"""Tokenizer: bracket strings <-> token ids.

A string of 0 to 40 parens becomes ``[start] + parens + [end] + [pad]...``.

>>> tokenize("(()").tolist()
[[0, 3, 3, 4, 2]]
>>> tokenize(["()", "(())"]).tolist()
[[0, 3, 4, 2, 1, 1], [0, 3, 3, 4, 4, 2]]
>>> decode(tokenize(["()", "(())"]))
['()', '(())']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from bracketlens.errors import BracketLensError

START, PAD, END, OPEN, CLOSE = 0, 1, 2, 3, 4
VOCAB: tuple[str, ...] = ("[start]", "[pad]", "[end]", "(", ")")
MAX_PARENS = 40
N_CTX = MAX_PARENS + 2  # [start] and [end] around the longest string

# byte value -> token id; 255 marks a byte that is not a paren
_BYTE_TO_TOKEN = np.full(256, 255, dtype=np.uint8)
_BYTE_TO_TOKEN[ord("(")] = OPEN
_BYTE_TO_TOKEN[ord(")")] = CLOSE


def tokenize(
    strings: str | Sequence[str], *, pad_to: int | None = None
) -> Int[Tensor, "batch seq"]:
    """Tokenize one string or a list of strings into a padded ``int64`` tensor.

    Args:
        strings: a paren string or a sequence of them (0 to 40 characters each).
        pad_to: total sequence length including ``[start]``/``[end]``; defaults to
            the longest string + 2.

    Raises:
        BracketLensError: a character other than ``(``/``)``, a string longer than
            40 parens, or ``pad_to`` too small for the longest string.
    """
    if isinstance(strings, str):
        strings = [strings]
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > MAX_PARENS:
        i = int(np.argmax(lengths))
        raise BracketLensError(
            f"string {i} has {longest} parens; the model reads at most {MAX_PARENS}. "
            "Shorten it or split it."
        )
    width = longest + 2 if pad_to is None else pad_to
    if width < longest + 2:
        raise BracketLensError(f"pad_to={pad_to} is too short for a {longest}-paren string")
    if width > N_CTX:
        raise BracketLensError(f"pad_to={pad_to} exceeds the model's context of {N_CTX}")

    flat = _encode_flat(strings, lengths)
    tokens = np.full((len(strings), width), PAD, dtype=np.int64)
    tokens[:, 0] = START
    # scatter all characters at once: row r, column 1 + offset within string r
    rows = np.repeat(np.arange(len(strings)), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = 1 + np.arange(len(flat)) - np.repeat(starts, lengths)
    tokens[rows, cols] = flat
    tokens[np.arange(len(strings)), lengths + 1] = END
    return torch.from_numpy(tokens)


def _encode_flat(strings: Sequence[str], lengths: np.ndarray) -> np.ndarray:
    """Concatenate and map every character to its token id, naming the first bad one."""
    joined = "".join(strings)
    try:
        raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raw = None
    if raw is not None and len(raw) == len(joined):
        flat = _BYTE_TO_TOKEN[raw]
        bad = np.flatnonzero(flat == 255)
        if len(bad) == 0:
            return flat.astype(np.int64)
        first = int(bad[0])
    else:
        first = next(i for i, c in enumerate(joined) if c not in "()")
    ends = np.cumsum(lengths)
    row = int(np.searchsorted(ends, first, side="right"))
    col = first - int(ends[row] - lengths[row])
    raise BracketLensError(
        f"string {row} {strings[row]!r} has {joined[first]!r} at position {col}; "
        "only '(' and ')' are allowed"
    )


def decode(tokens: Int[Tensor, "batch seq"] | Int[Tensor, " seq"]) -> list[str] | str:
    """Turn token ids back into paren strings, dropping special tokens.

    A 1-D tensor gives one string; a 2-D tensor gives a list.
    """
    arr = tokens.detach().cpu().numpy()
    chars = np.array(["", "", "", "(", ")"], dtype=object)
    if arr.ndim == 1:
        return "".join(chars[arr])
    return ["".join(row) for row in chars[arr]]


def open_proportion(tokens: Int[Tensor, "batch seq"]) -> Tensor:
    """Share of ``(`` among the parens of each string (0 for the empty string)."""
    n_open = (tokens == OPEN).sum(-1)
    n_paren = n_open + (tokens == CLOSE).sum(-1)
    return n_open / n_paren.clamp(min=1)
