"""Candidate generators: structured families of bracket strings and their edits.

Everything here is a pure function on Python strings: nothing scores and nothing
checks labels (the search filters and verifies every candidate with the ground
truth before it counts).

>>> tallest(6)
'((()))'
>>> course_family(total=8)
[')(((()))', '())((())', '(()))(()', '((())))(']
>>> block_strings(4, max_blocks=2)
['(())', '()()']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from bracketlens.data.tokens import MAX_PARENS

# Joints that open one negative dip between two balanced halves: X + J + Y has
# equal counts but is unbalanced, the failure the course model finds hardest.
DIP_JOINTS: tuple[str, ...] = (")(", "))((", ")))(((")


def tallest(n: int) -> str:
    """The tallest balanced string of ``n`` parens (``n`` even): ``(`` * n/2 + ``)`` * n/2."""
    return "(" * (n // 2) + ")" * (n // 2)


def course_family(total: int = MAX_PARENS) -> list[str]:
    """The course's ``A + ")(" + B`` with A, B tallest of lengths i and total - 2 - i.

    One string per even ``i`` from 0 to ``total - 2``, in that order.
    """
    return joined(_tallest_only, [")("], total)


def tallest_dips(max_len: int = MAX_PARENS) -> list[str]:
    """Tallest strings joined by each of :data:`DIP_JOINTS`, at every even length.

    >>> tallest_dips(4)
    [')(', ')(()', '())(', '))((']
    """
    return [
        s for total in range(2, max_len + 1, 2) for s in joined(_tallest_only, DIP_JOINTS, total)
    ]


def block_strings(n: int, max_blocks: int) -> list[str]:
    """Balanced strings of ``n`` parens made of at most ``max_blocks`` tallest blocks.

    ``(^a )^a (^b )^b ...`` for every composition ``a + b + ... = n/2``, tallest first.
    """
    return ["".join(tallest(2 * p) for p in parts) for parts in _compositions(n // 2, max_blocks)]


def shapes(n: int, max_blocks: int) -> list[str]:
    """Structured balanced strings of exactly ``n`` parens (none for odd ``n``).

    The block strings of :func:`block_strings`, then the same shapes of ``n - 2``
    parens wrapped in one outer ``( )`` (those that are not already tallest).
    """
    if n % 2:
        return []
    inner = block_strings(n - 2, max_blocks) if n >= 2 else []
    return block_strings(n, max_blocks) + ["(" + s + ")" for s in inner if ")(" in s]


def balanced_family(max_len: int, max_blocks: int) -> list[str]:
    """:func:`shapes` of every even length from 0 to ``max_len``, shortest first."""
    return [s for n in range(0, max_len + 1, 2) for s in shapes(n, max_blocks)]


def joined(parts: Callable[[int], Sequence[str]], joints: Iterable[str], total: int) -> list[str]:
    """Every ``X + J + Y`` of exactly ``total`` parens, with X and Y from ``parts(length)``.

    Args:
        parts: the strings of a given length that may stand left or right of the joint.
        joints: the middle pieces, e.g. :data:`DIP_JOINTS`.
        total: the length of every result.
    """
    out: list[str] = []
    for joint in joints:
        rest = total - len(joint)
        for left in range(rest + 1):
            rights = parts(rest - left)
            out += [x + joint + y for x in parts(left) for y in rights]
    return out


def swaps(s: str) -> list[str]:
    """Every string one adjacent transposition of two different characters away."""
    return [s[:i] + s[i + 1] + s[i] + s[i + 2 :] for i in range(len(s) - 1) if s[i] != s[i + 1]]


def flips(s: str) -> list[str]:
    """Every string one flipped character away."""
    return [s[:i] + ("(" if c == ")" else ")") + s[i + 1 :] for i, c in enumerate(s)]


def neighbours(s: str) -> list[str]:
    """Single edits: flips, adjacent swaps, and inserting or deleting two adjacent parens.

    Insertions (``()`` or ``)(`` at any position) only where the result still fits
    the model's 40 parens. The result is deduplicated, in a fixed order, without ``s``.
    """
    out = flips(s) + swaps(s)
    if len(s) + 2 <= MAX_PARENS:
        out += [s[:i] + pair + s[i:] for i in range(len(s) + 1) for pair in ("()", ")(")]
    out += [s[:i] + s[i + 2 :] for i in range(len(s) - 1)]
    return [t for t in unique(out) if t != s]


def perturb(s: str, rng: np.random.Generator, n_edits: int) -> str:
    """``s`` after ``n_edits`` random single edits (a kick out of a local optimum)."""
    for _ in range(n_edits):
        options = neighbours(s)
        s = options[int(rng.integers(len(options)))]
    return s


def unique(strings: Iterable[str]) -> list[str]:
    """Drop repeats, keeping the first occurrence's order."""
    return list(dict.fromkeys(strings))


def _compositions(total: int, max_parts: int) -> list[tuple[int, ...]]:
    """Ordered ways to write ``total`` as at most ``max_parts`` positive parts."""
    if total == 0:
        return [()]
    if max_parts == 0:
        return []
    return [
        (first, *rest)
        for first in range(total, 0, -1)
        for rest in _compositions(total - first, max_parts - 1)
    ]


def _tallest_only(n: int) -> list[str]:
    return [] if n % 2 else [tallest(n)]
