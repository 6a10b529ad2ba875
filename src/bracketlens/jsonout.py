"""Strict JSON out: a non-finite number is written as ``null`` with a reason, never ``NaN``.

``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which ``json.loads``
in Python accepts but no other parser does. Every JSON bracketlens writes goes
through :func:`strict_dumps`. Imports nothing heavy (the CLI uses it).

>>> strict_dumps({"accuracy": float("nan"), "n": 0})
'{"accuracy": null, "n": 0, "accuracy_null_reason": "was NaN (not a number), which JSON cannot hold"}'
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

REASON_SUFFIX = "_null_reason"


def strict_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(obj)``; raises if anything non-finite is left."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def strict(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite number replaced by ``None``.

    In a JSON object, ``{"x": NaN}`` becomes ``{"x": null, "x_null_reason": "..."}``;
    a list directly under key ``x`` holding non-finite numbers gets one
    ``x_null_reason`` naming their indices. numpy scalars become Python numbers.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        reasons: dict[str, str] = {}
        for key, value in obj.items():
            out[key] = strict(value)
            reason = _reason(value)
            if reason is not None:
                reasons[f"{key}{REASON_SUFFIX}"] = reason
        return out | {k: v for k, v in reasons.items() if k not in obj}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def _reason(value: Any) -> str | None:
    """Why ``value`` (or items of a list) became null, or None when nothing did."""
    name = _nonfinite_name(value)
    if name is not None:
        return f"was {name}, which JSON cannot hold"
    if isinstance(value, list | tuple):
        bad = [(i, n) for i, n in ((i, _nonfinite_name(v)) for i, v in enumerate(value)) if n]
        if bad:
            shown = ", ".join(f"{i} ({n})" for i, n in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            return f"items {shown}{more} were not finite, which JSON cannot hold"
    return None


def _nonfinite_name(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    if math.isnan(number):
        return "NaN (not a number)"
    if math.isinf(number):
        return "infinity" if number > 0 else "minus infinity"
    return None


def has_nonfinite(text: str) -> bool:
    """Whether a JSON text holds ``NaN`` or ``Infinity`` (``False`` for non-JSON text)."""
    found = False

    def flag(_: str) -> float:
        nonlocal found
        found = True
        return math.nan

    try:
        json.loads(text, parse_constant=flag)
    except (ValueError, RecursionError):
        return False
    return found
