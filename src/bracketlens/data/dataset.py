"""Data sets of bracket strings with their labels and the per-string facts the analysis uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.data.files import read_json_list
from bracketlens.data.tokens import CLOSE, OPEN, PAD, open_proportion, tokenize
from bracketlens.data.truth import (
    FailureTypes,
    failure_groups,
    failure_types,
    is_balanced_tokens,
)
from bracketlens.errors import BracketLensError
from bracketlens.limits import MAX_STRINGS

_EXPECTED = 'a list of ["(())", true] pairs'


class BracketDataset:
    """Paren strings, their labels, and their tokens padded to the longest string.

    Attributes:
        strings: the paren strings.
        labels: ``True`` where balanced, ``[batch]`` bool.
        tokens: ``[batch, seq]`` int64 token ids.
        description: where the strings came from (a file, a generator recipe).

    Slicing or indexing with a tensor/list returns a data set; ``len`` is the number
    of strings.
    """

    def __init__(
        self,
        strings: Sequence[str],
        labels: Sequence[bool] | Bool[Tensor, " batch"] | None = None,
        *,
        validate: bool = True,
        description: str = "",
        tokens: Int[Tensor, "batch seq"] | None = None,
    ) -> None:
        """Build a data set; labels default to the ground truth.

        Args:
            strings: paren strings, 0 to 40 characters each.
            labels: balanced or not per string; computed from the ground truth if None.
            validate: check given labels against the ground truth and raise
                :class:`BracketLensError` naming the first record that disagrees.
            description: free text recorded in findings and reports.
            tokens: precomputed tokens for ``strings`` (internal: slicing reuses them).
        """
        self.strings: list[str] = list(strings)
        self.tokens = tokenize(self.strings) if tokens is None else tokens
        if labels is None:
            self.labels = is_balanced_tokens(self.tokens)
        else:
            self.labels = torch.as_tensor(labels, dtype=torch.bool)
            if self.labels.shape != (len(self.strings),):
                raise BracketLensError(
                    f"got {len(self.labels)} labels for {len(self.strings)} strings"
                )
            if validate:
                self._check_labels()
        self.description = description

    def _check_labels(self) -> None:
        """Raise naming the first record whose label is not its ground truth."""
        truth = is_balanced_tokens(self.tokens)
        if not torch.equal(self.labels, truth):
            i = int(torch.nonzero(self.labels != truth)[0])
            raise BracketLensError(
                f"record {i} {self.strings[i]!r} is labelled "
                f"{bool(self.labels[i])} but is {'' if truth[i] else 'not '}balanced; "
                "fix or remove that record (the library's validate=False keeps wrong labels)"
            )

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[str, bool]], *, validate: bool = True, description: str = ""
    ) -> BracketDataset:
        """From ``(string, is_balanced)`` pairs, the course's format."""
        strings, labels = _check_records(pairs, source="pairs")
        return cls(strings, labels, validate=validate, description=description)

    @classmethod
    def from_json(cls, path: str | Path, *, validate: bool = True) -> BracketDataset:
        """From a JSON file holding a list of ``[string, is_balanced]`` pairs.

        The file is checked before it is parsed whole (see
        :func:`bracketlens.data.files.read_json_list`): at most ``MAX_DATA_BYTES``,
        a JSON list nested two levels deep; then it must hold 1 to ``MAX_STRINGS``
        records.
        """
        records = read_json_list(path, what="data file", expected=_EXPECTED)
        if not records:
            raise BracketLensError(f"data file {path} holds no records; expected {_EXPECTED}")
        if len(records) > MAX_STRINGS:
            raise BracketLensError(
                f"data file {path} holds {len(records):,} records; at most {MAX_STRINGS:,} "
                "are allowed: split it"
            )
        strings, labels = _check_records(records, source=str(path))
        return cls(strings, labels, validate=validate, description=f"file {path}")

    def __len__(self) -> int:
        return len(self.strings)

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> BracketDataset:
        if isinstance(index, int):
            index = [index]
        if isinstance(index, slice):
            idx = torch.arange(len(self))[index]
        else:
            idx = torch.as_tensor(index)
            if idx.dtype == torch.bool:
                idx = torch.nonzero(idx).flatten()
        tokens = self.tokens[idx]
        # keep padding tight: drop columns that are pad for every selected string
        width = int((tokens != PAD).sum(-1).max()) if len(idx) else 2
        strings = [self.strings[i] for i in idx.tolist()]
        subset = BracketDataset(
            strings,
            self.labels[idx],
            validate=False,
            description=self.description,
            tokens=tokens[:, :width],
        )
        known = self._known_truth()
        if known is not None:  # each string's own facts: they carry over to the subset
            types, groups = known
            picked = FailureTypes(types.total_elevation[idx], types.negative[idx])
            subset._truth_cache = (subset.tokens, picked, groups[idx])
        return subset

    def __repr__(self) -> str:
        return (
            f"BracketDataset(n={len(self)}, balanced={self.labels.float().mean().item():.3f}, "
            f"{self.description or 'no description'})"
        )

    def to(self, device: str | torch.device) -> BracketDataset:
        """Move tokens and labels to a device (returns self for chaining)."""
        self.tokens = self.tokens.to(device)
        self.labels = self.labels.to(device)
        return self

    @property
    def open_proportion(self) -> Float[Tensor, " batch"]:
        """Share of ``(`` among each string's parens."""
        return open_proportion(self.tokens)

    @property
    def starts_open(self) -> Bool[Tensor, " batch"]:
        """Whether each string starts with ``(``."""
        return self.tokens[:, 1] == OPEN

    @property
    def seq_length(self) -> Int[Tensor, " batch"]:
        """Number of parens in each string."""
        return (self.tokens >= OPEN).sum(-1)

    @property
    def failure_types(self) -> FailureTypes[Bool[Tensor, " batch"]]:
        """Total-elevation and negative failure per string (read right to left)."""
        return self._truth()[0]

    @property
    def failure_groups(self) -> Int[Tensor, " batch"]:
        """:class:`~bracketlens.data.truth.FailureGroup` of each string."""
        return self._truth()[1]

    def _truth(self) -> tuple[FailureTypes[Bool[Tensor, " batch"]], Int[Tensor, " batch"]]:
        """Failure types and groups, computed once per tokens tensor (a pass over all of it)."""
        known = self._known_truth()
        if known is None:
            types = failure_types(self.tokens)
            known = (types, failure_groups(self.tokens, types))
            self._truth_cache = (self.tokens, *known)
        return known

    def _known_truth(
        self,
    ) -> tuple[FailureTypes[Bool[Tensor, " batch"]], Int[Tensor, " batch"]] | None:
        """The failure types and groups if already computed for the current tokens."""
        cached = getattr(self, "_truth_cache", None)
        if cached is None or cached[0] is not self.tokens:  # none yet, or the tokens moved
            return None
        return cached[1], cached[2]

    def split(self, seed: int = 0) -> tuple[BracketDataset, BracketDataset]:
        """Two halves of a seeded random permutation (for fit here, check there)."""
        perm = self._halves(seed)
        mid = len(self) // 2
        return self[perm[:mid]], self[perm[mid:]]

    def split_groups(self, seed: int = 0) -> Int[Tensor, " batch"]:
        """Which half of :meth:`split` each string falls in: 0 for the first, 1 for the second."""
        perm = self._halves(seed)
        groups = torch.ones(len(self), dtype=torch.long)
        groups[perm[: len(self) // 2]] = 0
        return groups

    def _halves(self, seed: int) -> Tensor:
        return torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))

    def with_length(self, n_parens: int) -> BracketDataset:
        """The strings with exactly ``n_parens`` parens."""
        return self[self.seq_length == n_parens]

    def with_start(self, char: str) -> BracketDataset:
        """The strings starting with ``char`` (``"("`` or ``")"``)."""
        if char not in ("(", ")"):
            raise BracketLensError(f"start character must be '(' or ')', got {char!r}")
        return self[self.tokens[:, 1] == (OPEN if char == "(" else CLOSE)]


def _check_records(records: object, source: str) -> tuple[list[str], list[bool]]:
    """Validate ``[string, bool]`` records, naming the first malformed one."""
    if not isinstance(records, list | tuple):
        raise BracketLensError(
            f"{source}: expected a list of [string, is_balanced] pairs, got {type(records).__name__}"
        )
    strings: list[str] = []
    labels: list[bool] = []
    for i, rec in enumerate(records):
        ok = isinstance(rec, list | tuple) and len(rec) == 2 and isinstance(rec[0], str)
        if not ok:
            raise BracketLensError(
                f"{source}: record {i} is {rec!r}; expected a [string, is_balanced] pair"
            )
        if not isinstance(rec[1], bool):
            raise BracketLensError(
                f"{source}: record {i} has label {rec[1]!r}; labels must be true or false"
            )
        strings.append(rec[0])
        labels.append(rec[1])
    return strings, labels
