"""Ground truth: is a string balanced, and how does it fail.

Balanced means every prefix has at least as many ``(`` as ``)`` and the totals
are equal. The course model reads right to left, so its two failure types are
defined on suffixes:

- *total elevation failure*: the counts of ``(`` and ``)`` differ;
- *negative failure*: some suffix has more ``(`` than ``)`` (reading right to
  left, the running elevation goes the wrong way).

A string is balanced exactly when it has neither failure.

>>> is_balanced("(())()"), is_balanced("())(")
(True, False)
>>> failure_types_of("(()")
FailureTypes(total_elevation=True, negative=True)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from bracketlens.data.tokens import CLOSE, OPEN
from bracketlens.errors import BracketLensError

T = TypeVar("T")


@dataclass(frozen=True)
class FailureTypes(Generic[T]):
    """The two failure types, for one string (bools) or a batch (bool tensors)."""

    total_elevation: T
    negative: T


class FailureGroup(enum.IntEnum):
    """The four failure groups the course plots by, in the course's order."""

    BOTH = 0
    NEGATIVE_ONLY = 1
    ELEVATION_ONLY = 2
    BALANCED = 3

    @property
    def label(self) -> str:
        return _GROUP_LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> FailureGroup:
        """The group whose :attr:`label` is ``label``."""
        for group in cls:
            if group.label == label:
                return group
        known = ", ".join(repr(g.label) for g in cls)
        raise BracketLensError(f"unknown failure group {label!r}; use one of {known}")


G = TypeVar("G", Tensor, np.ndarray)


def group_rows(groups: G, label: str) -> G:
    """Which strings are in the failure group named ``label`` (every string for ``"all"``)."""
    return groups >= 0 if label == "all" else groups == FailureGroup.from_label(label)


def labels_present(groups: Tensor | np.ndarray) -> list[str]:
    """``"all"``, then the label of every failure group with at least one string."""
    return ["all", *(g.label for g in FailureGroup if (groups == g).any())]


_GROUP_LABELS = {
    FailureGroup.BOTH: "both failures",
    FailureGroup.NEGATIVE_ONLY: "just neg failure",
    FailureGroup.ELEVATION_ONLY: "just total elevation failure",
    FailureGroup.BALANCED: "balanced",
}


def is_balanced(parens: str) -> bool:
    """For-loop checker: the definition, read left to right."""
    depth = 0
    for c in parens:
        depth += 1 if c == "(" else -1
        if depth < 0:
            return False
    return depth == 0


def failure_types_of(parens: str) -> FailureTypes[bool]:
    """For-loop failure types of one string, read right to left."""
    elevation, went_negative = 0, False
    for c in reversed(parens):
        elevation += 1 if c == "(" else -1
        went_negative |= elevation > 0
    return FailureTypes(total_elevation=elevation != 0, negative=went_negative)


def failure_types(tokens: Int[Tensor, "batch seq"]) -> FailureTypes[Bool[Tensor, " batch"]]:
    """Vectorized failure types from tokens (special tokens count as 0)."""
    step = (tokens == OPEN).to(torch.int32) - (tokens == CLOSE).to(torch.int32)
    # elevation of each suffix: cumulative sum read from the right
    suffix = step.flip(-1).cumsum(-1)
    return FailureTypes(total_elevation=suffix[:, -1] != 0, negative=suffix.max(-1).values > 0)


def is_balanced_tokens(tokens: Int[Tensor, "batch seq"]) -> Bool[Tensor, " batch"]:
    """Vectorized checker: balanced iff neither failure type."""
    ft = failure_types(tokens)
    return ~(ft.total_elevation | ft.negative)


def failure_groups(
    tokens: Int[Tensor, "batch seq"], types: FailureTypes[Bool[Tensor, " batch"]] | None = None
) -> Int[Tensor, " batch"]:
    """The :class:`FailureGroup` of each string, as an int tensor (from ``types`` if given)."""
    ft = failure_types(tokens) if types is None else types
    groups = torch.full(ft.negative.shape, int(FailureGroup.BALANCED), dtype=torch.int64)
    groups[ft.total_elevation & ft.negative] = int(FailureGroup.BOTH)
    groups[~ft.total_elevation & ft.negative] = int(FailureGroup.NEGATIVE_ONLY)
    groups[ft.total_elevation & ~ft.negative] = int(FailureGroup.ELEVATION_ONLY)
    return groups
