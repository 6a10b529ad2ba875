"""The universality summary of a sweep: how often each role and each verdict recurs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from bracketlens.stats import wilson
from bracketlens.sweeps.task import ROLES

# the course checkpoint's roles, as `bracketlens circuit` localises them
COURSE_LAYOUT = {"elevation_head": "2.0", "negative_head": "2.1", "read_position": "1"}
NOT_FOUND = "not found"
UNEXPLAINED = "none"  # explain's best_model when no high-level model reaches its bar


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, object]:
    """Counts and Wilson 95% intervals over the seeds that finished without error.

    Returns a dict with ``roles`` (per role, each location with its count and
    fraction), ``verdicts`` (per verdict, with where each variable was aligned),
    ``layouts`` (elevation head, negative head, read position together),
    ``course_layout``, ``unexplained`` (explain named no model) and the fields of
    :func:`explained_seeds`.
    """
    ok = [r for r in rows if r.get("error") is None]
    n = len(ok)
    layouts = Counter(_layout(r) for r in ok)
    course = sum(1 for r in ok if _layout(r) == _layout({"roles": _course_roles()}))
    return {
        "n_seeds": len(rows),
        "n_analysed": n,
        "n_failed": len(rows) - n,
        "failed_seeds": [r["seed"] for r in rows if r.get("error") is not None],
        "roles": {name: _shares(Counter(_location(r, name) for r in ok), n) for name in ROLES},
        "verdicts": _verdicts(ok),
        "layouts": _shares(layouts, n, key="layout"),
        "course_layout": {"layout": _layout({"roles": _course_roles()}), **_share(course, n)},
        "unexplained": sum(1 for r in ok if r.get("verdict") == UNEXPLAINED),
        **explained_seeds(ok),
    }


def explained_seeds(rows: Sequence[dict[str, Any]]) -> dict[str, object]:
    """How many seeds each causal model explains, and the seeds none explains.

    Over the rows that have ``explain``'s verdict: ``passing_models`` counts, for each
    model, the seeds on which it passes (a seed where several pass counts for each),
    with Wilson 95% intervals; ``explained`` counts the seeds where some model passes,
    alone or as a combined model by input group; ``unexplained_seeds`` lists the others,
    each with its closest model and the guards that model fails.
    """
    rows = [r for r in rows if r.get("verdict") is not None]
    n = len(rows)
    counts = Counter(name for r in rows for name in _passing(r))
    combined = [r for r in rows if not _passing(r) and r.get("combined")]
    left = [r for r in rows if not _passing(r) and not r.get("combined")]
    return {
        "passing_models": _shares(counts, n, key="model"),
        "combined_only": _share(len(combined), n),
        "explained": _share(n - len(left), n),
        "unexplained_seeds": [
            {
                "seed": r["seed"],
                "closest": (r.get("closest") or {}).get("model"),
                "iia": r.get("iia"),
                "failing": (r.get("closest") or {}).get("failing") or [],
            }
            for r in sorted(left, key=lambda r: r["seed"])
        ],
    }


def _passing(row: dict[str, Any]) -> list[str]:
    """The models that pass on this seed (a row without the list: its verdict, if any)."""
    passing = row.get("passing")
    if passing is not None:
        return list(passing)
    verdict = row.get("verdict")
    return [] if verdict in (None, UNEXPLAINED) else [str(verdict)]


def _share(count: int, n: int) -> dict[str, object]:
    """A count with its fraction of ``n`` and Wilson 95% interval (all null when ``n`` is 0)."""
    if n == 0:
        return {"count": count, "fraction": None, "ci_low": None, "ci_high": None}
    est = wilson(count, n)
    return {"count": count, "fraction": est.value, "ci_low": est.low, "ci_high": est.high}


def _shares(counts: Counter[str], n: int, key: str = "location") -> list[dict[str, object]]:
    """Each value with its count and fraction, most frequent first (ties by name)."""
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{key: value, **_share(count, n)} for value, count in order]


def _location(row: dict[str, Any], role: str) -> str:
    found = (row.get("roles") or {}).get(role) or {}
    return found.get("location") or NOT_FOUND


def _course_roles() -> dict[str, dict[str, str]]:
    return {role: {"location": loc} for role, loc in COURSE_LAYOUT.items()}


def _layout(row: dict[str, Any]) -> str:
    """Elevation head, negative head and read position as one label."""
    elev, neg, read = (_location(row, role) for role in COURSE_LAYOUT)
    return f"elevation {elev}, negative {neg}, reads {read}"


def _verdicts(rows: Sequence[dict[str, Any]]) -> list[dict[str, object]]:
    """Each verdict's share of seeds, and for each of its variables, where it was aligned."""
    explained = [r for r in rows if r.get("verdict") is not None]
    counts = Counter(str(r["verdict"]) for r in explained)
    out = []
    for entry in _shares(counts, len(rows), key="verdict"):
        with_verdict = [r for r in explained if r["verdict"] == entry["verdict"]]
        where: dict[str, Counter[str]] = {}
        for row in with_verdict:
            for var in row.get("variables") or []:
                where.setdefault(var["name"], Counter())[var["where"]] += 1
        out.append(entry | {"variables": {k: dict(v.most_common()) for k, v in where.items()}})
    return out
