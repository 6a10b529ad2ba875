"""Checks for the ground-truth exercises: the for-loop and vectorized balance checkers.

The course model reads right to left, so its failure types are defined on
suffixes; the most common mistake is to compute them left to right, which these
checks detect by comparing with the mirrored computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from bracketlens.arena._compare import EXACT, Case, CheckResult, Mistake, looks_like, run_cases
from bracketlens.arena.datasets import CourseData, tokens_of
from bracketlens.data.tokens import CLOSE, OPEN, tokenize
from bracketlens.data.truth import failure_types, is_balanced

LearnerFn = Callable[..., Any]

TOLERANCES = {
    "is_balanced_forloop": EXACT,
    "is_balanced_vectorized": EXACT,
    "is_balanced_vectorized_return_both": EXACT,
    "total_elevation_and_negative_failures": EXACT,
}

# short strings that separate the usual wrong answers from the right one
TRICKY = (
    "",
    "()",
    "(())",
    "()()",
    ")(",
    "))((",
    "(()",
    "())",
    "(()))(()",
    "())(()",
    "((()()()()))",
)
FAILURE_PARTS = ("total_elevation_failure", "negative_failure")


def _totals_only(s: str) -> Tensor:
    return torch.tensor(s.count("(") == s.count(")"))


def _never_negative(s: str) -> Tensor:
    return torch.tensor(not bool(left_to_right_negative(tokenize(s))[0]))


def _balance_mistakes(s: str) -> list[Mistake]:
    return [
        looks_like(
            "you only compared the totals; a string is also unbalanced when some prefix has "
            "more ')' than '(' (e.g. ')(')",
            lambda: _totals_only(s),
        ),
        looks_like(
            "you only checked that no prefix has more ')' than '('; the totals must also be "
            "equal (e.g. '(()' is unbalanced)",
            lambda: _never_negative(s),
        ),
    ]


def check_is_balanced_forloop(fn: LearnerFn) -> CheckResult:
    """The for-loop checker on strings that separate the usual mistakes."""
    cases = (
        Case(
            f"is_balanced_forloop({s!r})",
            lambda s=s: fn(s),  # type: ignore[misc]
            torch.tensor(is_balanced(s)),
            TOLERANCES["is_balanced_forloop"],
            _balance_mistakes(s),
        )
        for s in TRICKY
    )
    return run_cases("is_balanced_forloop", cases)


def check_is_balanced_vectorized(fn: LearnerFn) -> CheckResult:
    """The tensor checker on one string's tokens ``[seq]``, with padding after ``[end]``."""
    cases = (
        Case(
            f"is_balanced_vectorized(tokens of {s!r} with 3 [pad])",
            lambda s=s: fn(tokenize(s, pad_to=len(s) + 5)[0]),  # type: ignore[misc]
            torch.tensor(is_balanced(s)),
            TOLERANCES["is_balanced_vectorized"],
            _balance_mistakes(s),
        )
        for s in TRICKY
    )
    return run_cases("is_balanced_vectorized", cases)


def mirror(tokens: Int[Tensor, "batch seq"]) -> Int[Tensor, "batch seq"]:
    """Reverse each string and swap ``(``/``)``: suffixes of the mirror are prefixes read backwards."""
    swapped = torch.where(tokens == OPEN, CLOSE, torch.where(tokens == CLOSE, OPEN, tokens))
    return swapped.flip(-1)


def left_to_right_negative(tokens: Int[Tensor, "batch seq"]) -> Bool[Tensor, " batch"]:
    """Whether some prefix has more ``)`` than ``(``: the left-to-right negative failure."""
    return failure_types(mirror(tokens)).negative


def failure_mistakes(tokens: Int[Tensor, "batch seq"]) -> list[Mistake]:
    """Left to right, swapped outputs, negated outputs."""
    ft = failure_types(tokens)
    elevation, negative = ft.total_elevation, ft.negative
    ltr = left_to_right_negative(tokens)
    return [
        looks_like(
            "you read left to right; the course model reads right to left, so a negative "
            "failure is a suffix with more '(' than ')': flip the sequence before the "
            "cumulative sum",
            lambda: (elevation, ltr),
        ),
        looks_like(
            "you returned (negative_failure, total_elevation_failure); return "
            "(total_elevation_failure, negative_failure)",
            lambda: (negative, elevation),
        ),
        looks_like(
            "you read left to right and swapped the two outputs; read right to left (flip "
            "the sequence) and return (total_elevation_failure, negative_failure)",
            lambda: (ltr, elevation),
        ),
        looks_like(
            "your failures are negated: True must mean the string fails the test",
            lambda: (~elevation, ~negative),
        ),
    ]


def _failure_case(label: str, call: Callable[[], object], tokens: Tensor) -> Case:
    ft = failure_types(tokens)
    return Case(
        label,
        call,
        (ft.total_elevation, ft.negative),
        EXACT,
        failure_mistakes(tokens),
        parts=FAILURE_PARTS,
    )


def check_is_balanced_vectorized_return_both(fn: LearnerFn, data: CourseData) -> CheckResult:
    """Both failure types, on the data and on strings that separate the usual mistakes."""

    def cases() -> Iterator[Case]:
        toks = tokens_of(data)
        yield _failure_case("is_balanced_vectorized_return_both(data.toks)", lambda: fn(toks), toks)
        tricky = tokenize(list(TRICKY))
        yield _failure_case(
            f"is_balanced_vectorized_return_both(tokenize({list(TRICKY)}))",
            lambda: fn(tricky),
            tricky,
        )

    return run_cases("is_balanced_vectorized_return_both", cases())


def check_total_elevation_and_negative_failures(
    data: CourseData, total_elevation_failure: Tensor, negative_failure: Tensor
) -> CheckResult:
    """The two failure tensors computed on ``data.toks``."""
    case = _failure_case(
        "total_elevation_failure, negative_failure",
        lambda: (total_elevation_failure, negative_failure),
        tokens_of(data),
    )
    return run_cases("total_elevation_and_negative_failures", [case])


__all__ = [
    "TOLERANCES",
    "check_is_balanced_forloop",
    "check_is_balanced_vectorized",
    "check_is_balanced_vectorized_return_both",
    "check_total_elevation_and_negative_failures",
    "failure_mistakes",
    "left_to_right_negative",
    "mirror",
]
