"""The course's tokenizer, data set and balance checkers, over :mod:`bracketlens.data`.

The course builds its data with ``SimpleTokenizer("()")`` and
``BracketsDataset(data_tuples)``; these classes keep those names, attributes and
conventions (``toks``, ``isbal``, ``strs``, ``max_len`` counting parens only) and
delegate the work to :func:`~bracketlens.data.tokens.tokenize` and
:class:`~bracketlens.data.dataset.BracketDataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, overload

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import END, PAD, START, VOCAB, decode, tokenize
from bracketlens.data.truth import failure_types, is_balanced, is_balanced_tokens
from bracketlens.errors import BracketLensError


class SimpleTokenizer:
    """The course's tokenizer: ``[start] + parens + [end] + [pad]...`` as ``int64`` ids.

    Attributes:
        t_to_i: token -> id, e.g. ``{"(": 3, ")": 4, "[start]": 0, ...}``.
        i_to_t: id -> token.
    """

    START_TOKEN: ClassVar[int] = START
    PAD_TOKEN: ClassVar[int] = PAD
    END_TOKEN: ClassVar[int] = END

    def __init__(self, alphabet: str = "()") -> None:
        """Build the tokenizer; the model knows only the alphabet ``"()"``."""
        if alphabet != "()":
            raise BracketLensError(
                f'the bracket model reads the alphabet "()" only, got {alphabet!r}; '
                'use SimpleTokenizer("()")'
            )
        self.alphabet = alphabet
        self.t_to_i: dict[str, int] = {name: i for i, name in enumerate(VOCAB)}
        self.i_to_t: dict[int, str] = {i: t for t, i in self.t_to_i.items()}

    def tokenize(
        self, strs: str | Sequence[str], max_len: int | None = None
    ) -> Int[Tensor, "batch seq"]:
        """Wraps :func:`bracketlens.data.tokens.tokenize`; ``max_len`` counts parens only."""
        strings = [strs] if isinstance(strs, str) else list(strs)
        if max_len is None:
            # the course pads to at least one paren, so all-empty input still has 3 columns
            max_len = max([len(s) for s in strings] + [1])
        return tokenize(strings, pad_to=max_len + 2)

    def decode(self, tokens: Int[Tensor, "batch seq"]) -> list[str]:
        """Wraps :func:`bracketlens.data.tokens.decode`: one string per row, special tokens dropped."""
        if tokens.ndim != 2:
            raise BracketLensError(
                f"decode needs a batch dimension, got a {tokens.ndim}-d tensor; "
                "use tokens.unsqueeze(0) for one string"
            )
        return list(decode(tokens))

    def __repr__(self) -> str:
        return f"SimpleTokenizer({self.alphabet!r})"


class BracketsDataset:
    """The course's data set, built from ``(string, is_balanced)`` pairs.

    Attributes mirror the course: ``strs``, ``isbal``, ``toks``,
    ``open_proportion``, ``starts_open`` and ``seq_length`` (the padded width);
    ``dataset`` is the underlying :class:`~bracketlens.data.dataset.BracketDataset`.
    Labels are checked against the ground truth (a wrong one raises
    :class:`BracketLensError`).
    """

    def __init__(self, data_tuples: Sequence[tuple[str, bool]] | Sequence[list]) -> None:
        """Wraps :meth:`BracketDataset.from_pairs` (labels given as 0-d tensors are accepted)."""
        pairs = [_plain_label(rec) for rec in data_tuples]
        # from_pairs validates each record and names the first malformed one
        self.dataset = BracketDataset.from_pairs(pairs, description="course data tuples")  # type: ignore[arg-type]

    @classmethod
    def _wrap(cls, dataset: BracketDataset) -> BracketsDataset:
        obj = cls.__new__(cls)
        obj.dataset = dataset
        return obj

    @classmethod
    def with_length(
        cls, data_tuples: Sequence[tuple[str, bool]], selected_len: int
    ) -> BracketsDataset:
        """Wraps :meth:`BracketDataset.with_length`: the strings of ``selected_len`` parens."""
        return cls._wrap(cls(data_tuples).dataset.with_length(selected_len))

    @classmethod
    def with_start_char(
        cls, data_tuples: Sequence[tuple[str, bool]], start_char: str
    ) -> BracketsDataset:
        """Wraps :meth:`BracketDataset.with_start`: the strings starting with ``start_char``."""
        return cls._wrap(cls(data_tuples).dataset.with_start(start_char))

    @property
    def strs(self) -> list[str]:
        return self.dataset.strings

    @property
    def isbal(self) -> Bool[Tensor, " batch"]:
        return self.dataset.labels

    @property
    def toks(self) -> Int[Tensor, "batch seq"]:
        return self.dataset.tokens

    @property
    def open_proportion(self) -> Float[Tensor, " batch"]:
        return self.dataset.open_proportion

    @property
    def starts_open(self) -> Bool[Tensor, " batch"]:
        return self.dataset.starts_open

    @property
    def seq_length(self) -> int:
        """The padded sequence length (the course's ``toks.size(-1)``)."""
        return int(self.toks.shape[-1])

    def __len__(self) -> int:
        return len(self.dataset)

    @overload
    def __getitem__(self, idx: slice) -> BracketsDataset: ...

    @overload
    def __getitem__(self, idx: int) -> tuple[str, Tensor, Tensor]: ...

    def __getitem__(self, idx: int | slice) -> BracketsDataset | tuple[str, Tensor, Tensor]:
        """A slice gives a data set; an integer gives ``(string, isbal, toks)`` as in the course."""
        if isinstance(idx, slice):
            return self._wrap(self.dataset[idx])
        return self.strs[idx], self.isbal[idx], self.toks[idx]

    def to(self, device: str | torch.device) -> BracketsDataset:
        """Move tokens and labels to ``device``; returns self."""
        self.dataset.to(device)
        return self

    def __repr__(self) -> str:
        return f"BracketsDataset(n={len(self)}, seq_length={self.seq_length})"


def _plain_label(record: object) -> object:
    """``(s, tensor(True))`` -> ``(s, True)``: pairs rebuilt from ``isbal`` hold 0-d tensors."""
    is_pair = isinstance(record, tuple | list) and len(record) == 2
    if is_pair and isinstance(record[1], Tensor) and record[1].numel() == 1:  # type: ignore[index]
        return (record[0], bool(record[1]))  # type: ignore[index]
    return record


CourseData = BracketsDataset | BracketDataset


def tokens_of(data: CourseData) -> Int[Tensor, "batch seq"]:
    """The tokens of a course or library data set."""
    return data.toks if isinstance(data, BracketsDataset) else data.tokens


def labels_of(data: CourseData) -> Bool[Tensor, " batch"]:
    """The balanced labels of a course or library data set."""
    return data.isbal if isinstance(data, BracketsDataset) else data.labels


def is_balanced_forloop(parens: str) -> bool:
    """Wraps :func:`bracketlens.data.truth.is_balanced` (a character other than ``(``/``)`` raises)."""
    bad = set(parens) - {"(", ")"}
    if bad:
        raise BracketLensError(f"{parens!r} has {sorted(bad)[0]!r}; only '(' and ')' are allowed")
    return is_balanced(parens)


def is_balanced_vectorized(tokens: Int[Tensor, " seq"]) -> bool:
    """Wraps :func:`bracketlens.data.truth.is_balanced_tokens` for one string's tokens."""
    if tokens.ndim != 1:
        raise BracketLensError(
            f"is_balanced_vectorized takes one string's tokens [seq], got shape "
            f"{tuple(tokens.shape)}; for a batch use is_balanced_vectorized_return_both"
        )
    return bool(is_balanced_tokens(tokens[None])[0])


def is_balanced_vectorized_return_both(
    toks: Int[Tensor, "batch seq"],
) -> tuple[Bool[Tensor, " batch"], Bool[Tensor, " batch"]]:
    """Wraps :func:`bracketlens.data.truth.failure_types`: (total elevation, negative) failures."""
    types = failure_types(toks)
    return types.total_elevation, types.negative


__all__ = [
    "BracketsDataset",
    "CourseData",
    "SimpleTokenizer",
    "is_balanced_forloop",
    "is_balanced_vectorized",
    "is_balanced_vectorized_return_both",
    "labels_of",
    "tokens_of",
]
