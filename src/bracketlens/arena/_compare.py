"""Comparing a learner's answer with ours, and naming the mistake when they differ.

A check is a sequence of :class:`Case` objects: one call of the learner's
function, the value it should return, a tolerance, and the common mistakes to
test for when it does not match. :func:`run_cases` runs them in order and stops
at the first failure, so the message is about one call the learner can rerun.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

Parts = tuple[Tensor, ...]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check; a wrong answer is a result, never an exception.

    Attributes:
        name: the course function (or value) checked, e.g. ``"get_WOV"``.
        passed: whether every case matched ours within the check's tolerance.
        max_abs_error: the largest ``|yours - ours|`` over the cases compared; ``None``
            when nothing could be compared (an exception, a wrong type or shape).
        shape_mismatch: ``(expected shape, your shape)`` when shapes differ, else ``None``.
        message: what matched, or which call went wrong, how, and what to change.
    """

    name: str
    passed: bool
    max_abs_error: float | None
    shape_mismatch: tuple[tuple[int, ...], tuple[int, ...]] | None
    message: str


@dataclass(frozen=True)
class Tolerance:
    """Pass when ``max |yours - ours| <= atol + rtol * max |ours|``.

    ``rtol`` is relative to the largest entry, not elementwise: directions from
    LayerNorm fits are only defined up to the fit's numerical precision overall,
    and small entries of them carry no more precision than large ones.
    """

    atol: float
    rtol: float

    def bound(self, expected: Tensor) -> float:
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        return self.atol + self.rtol * scale


EXACT = Tolerance(atol=0.0, rtol=0.0)  # booleans
WEIGHT_TOL = Tolerance(atol=1e-5, rtol=0.0)  # products of a few weight matrices
ACTIVATION_TOL = Tolerance(atol=1e-5, rtol=1e-5)  # one forward pass, any summation order
DIRECTION_TOL = Tolerance(atol=1e-5, rtol=1e-3)  # anything that goes through a LayerNorm fit

# A diagnosis looks at the learner's answer (as tensors) and names a mistake, or returns None.
Mistake = Callable[[Parts, Tolerance], str | None]


class AnswerError(Exception):
    """The learner's answer cannot be compared (wrong type, missing key): the message says why."""


@dataclass(frozen=True)
class Case:
    """One call of the learner's function and what it should give.

    Attributes:
        label: the call as the learner would write it, e.g. ``"get_WOV(model, 1, 0)"``.
        call: runs the learner's function (or returns the learner's value).
        expected: our answer: a tensor, or a tuple of tensors for tuple returns.
        tol: the tolerance for this case.
        mistakes: diagnoses tried in order when the answer does not match.
        convert: turns the learner's raw answer into tensors (may raise AnswerError).
        parts: names of the tuple elements, for messages.
    """

    label: str
    call: Callable[[], object]
    expected: Tensor | Parts
    tol: Tolerance
    mistakes: Sequence[Mistake] = ()
    convert: Callable[[object], Tensor | Parts] | None = None
    parts: tuple[str, ...] = field(default=())


def looks_like(
    text: str, alternative: Callable[[], Tensor | Parts | None], tol: Tolerance | None = None
) -> Mistake:
    """A diagnosis: the answer matches ``alternative()`` (what the mistake would give)."""

    def diagnose(got: Parts, default: Tolerance) -> str | None:
        alt = alternative()
        if alt is None:
            return None
        return text if _all_close(got, _as_parts(alt), tol or default) else None

    return diagnose


def to_tensor(value: object) -> Tensor:
    """A learner's value as a CPU float64 tensor (raises AnswerError if it is not real numbers)."""
    if isinstance(value, Tensor):
        tensor = value.detach().cpu()
    elif isinstance(value, np.ndarray | np.generic | bool | int | float):
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError):
            raise AnswerError(f"returned an array of {np.asarray(value).dtype}") from None
    else:
        raise AnswerError(f"returned {article(type(value).__name__)}; expected a tensor")
    if tensor.is_complex():
        raise AnswerError(f"returned a tensor of dtype {tensor.dtype}; expected real numbers")
    return tensor.to(torch.float64)


def article(noun: str) -> str:
    """``"an int"``, ``"a list"``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _as_parts(value: Tensor | Parts) -> Parts:
    return (value,) if isinstance(value, Tensor) else tuple(value)


def _default_convert(raw: object, n_parts: int) -> Parts:
    if n_parts == 1:
        return (to_tensor(raw),)
    if not isinstance(raw, tuple | list) or len(raw) != n_parts:
        got = article(type(raw).__name__) + (
            f" of {len(raw)}" if isinstance(raw, tuple | list) else ""
        )
        raise AnswerError(f"returned {got}; expected a tuple of {n_parts} tensors")
    return tuple(to_tensor(x) for x in raw)


def _max_error(got: Tensor, expected: Tensor) -> float:
    if got.numel() == 0:
        return 0.0
    return float((got - expected.to(torch.float64)).abs().max())


def _all_close(got: Parts, expected: Parts, tol: Tolerance) -> bool:
    if len(got) != len(expected):
        return False
    return all(
        g.shape == e.shape and _max_error(g, e) <= tol.bound(e.to(torch.float64))
        for g, e in zip(got, expected, strict=True)
    )


def run_cases(name: str, cases: Iterable[Case]) -> CheckResult:
    """Run each case in order; the first failure is the result, else a pass."""
    worst, count = 0.0, 0
    for case in cases:
        failure = _judge(name, case)
        if isinstance(failure, CheckResult):
            return failure
        worst, count = max(worst, failure), count + 1
    return CheckResult(
        name, True, worst, None, f"{name}: all {count} cases match (max abs error {worst:.2g})"
    )


def _judge(name: str, case: Case) -> CheckResult | float:
    """The max error of a matching case, or the failed result."""
    expected = tuple(e.detach().cpu().to(torch.float64) for e in _as_parts(case.expected))
    try:
        raw = case.call()
    except Exception as err:  # the learner's code may raise anything; report it, do not re-raise
        return _fail(name, case, f"your function raised {type(err).__name__}: {err}")
    try:
        got = case.convert(raw) if case.convert else _default_convert(raw, len(expected))
        got = tuple(to_tensor(g) for g in _as_parts(got))
    except AnswerError as err:
        return _fail(name, case, str(err))
    if len(got) != len(expected):
        return _fail(name, case, f"returned {len(got)} values; expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if g.shape != e.shape:
            shapes = (tuple(e.shape), tuple(g.shape))
            text = f"wrong shape{_part(case, i)}: expected {shapes[0]}, got {shapes[1]}"
            hint = _diagnose(case, got, expected)
            return _fail(name, case, f"{text}; {hint}" if hint else text, shapes=shapes)
    error = max(_max_error(g, e) for g, e in zip(got, expected, strict=True))
    if _all_close(got, expected, case.tol):
        return error
    hint = _diagnose(case, got, expected) or _describe(case, got, expected)
    return _fail(name, case, hint, error=error)


def _diagnose(case: Case, got: Parts, expected: Parts) -> str | None:
    is_bool = all(e.dtype == torch.bool for e in _as_parts(case.expected))
    for mistake in [*case.mistakes, *_generic_mistakes(expected, is_bool)]:
        text = mistake(got, case.tol)
        if text:
            return text
    return None


def _generic_mistakes(expected: Parts, is_bool: bool) -> list[Mistake]:
    """Negation, sign and transpose: worth testing on any single tensor."""
    if len(expected) != 1:
        return []
    (e,) = expected
    if is_bool:
        return [looks_like("your result is the negation of ours", lambda: 1 - e)]
    mistakes = [looks_like("wrong sign: your result is minus ours", lambda: -e)]
    if e.ndim >= 2:
        mistakes.append(
            looks_like(
                "your result is the transpose of ours (its last two dimensions are swapped)",
                lambda: e.transpose(-1, -2),
            )
        )
    return mistakes


def _describe(case: Case, got: Parts, expected: Parts) -> str:
    """Where the largest difference is, in a part outside its tolerance, when no known
    mistake explains it (a part with a larger error may be inside its own, looser bound)."""

    def excess(k: int) -> float:
        error = _max_error(got[k], expected[k])
        return math.inf if math.isnan(error) else error - case.tol.bound(expected[k])

    i = max(range(len(got)), key=excess)
    g, e = got[i], expected[i]
    if bool(torch.isnan(g).any()):
        return f"your result{_part(case, i)} contains NaN"
    diff = (g - e).abs()
    flat = int(diff.argmax())
    index = tuple(int(x) for x in np.unravel_index(flat, tuple(g.shape))) if g.ndim else ()
    return (
        f"values differ{_part(case, i)}: max abs error {float(diff.max()):.3g} at index "
        f"{index} (yours {float(g.flatten()[flat]):.6g}, ours {float(e.flatten()[flat]):.6g}); "
        f"allowed {case.tol.bound(e):.2g}"
    )


def _part(case: Case, i: int) -> str:
    return f" in {case.parts[i]}" if case.parts else ""


def _fail(
    name: str,
    case: Case,
    message: str,
    *,
    error: float | None = None,
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
) -> CheckResult:
    if error is not None and math.isnan(error):
        error = None
    return CheckResult(name, False, error, shapes, f"{case.label}: {message}")
