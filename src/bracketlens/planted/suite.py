"""Where a variable is planted: the declared space, seeded draws, and the suite file.

A placement puts one variable of the balance algorithm in one head's output
(``attn.hook_z``) at one position. The space:

- variables: ``total_elevation`` (is the string's total elevation non-zero) and
  ``negative`` (does some suffix hold more "(" than ")");
- heads: any head of layer 0 or 1; ``negative`` only in layer 1, because a layer-0
  head sees only embeddings, and no single attention average of them decides
  whether some suffix goes positive (the total elevation is one such average);
- positions: 0, 2 or 3, never 1 (the course model's read position); every string
  of two or more parens has a token there.

The suite file is written before any model is trained or any detector runs, so
that the answer is fixed first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from bracketlens.algorithms import Search
from bracketlens.errors import BracketLensError

VARIABLES = ("total_elevation", "negative")
POSITIONS = (0, 2, 3)
LAYERS = {"total_elevation": (0, 1), "negative": (1,)}
N_HEADS = 2


@dataclass(frozen=True)
class Placement:
    """One planted variable: which, in which head, at which position."""

    name: str
    variable: str
    layer: int
    head: int
    position: int
    seed: int

    def __post_init__(self) -> None:
        if self.variable not in VARIABLES:
            raise BracketLensError(f"unknown variable {self.variable!r}; use one of {VARIABLES}")
        if self.layer not in LAYERS[self.variable] or not 0 <= self.head < N_HEADS:
            raise BracketLensError(f"{self.variable} cannot sit in head {self.layer}.{self.head}")
        if self.position not in POSITIONS:
            raise BracketLensError(f"position must be one of {POSITIONS}, got {self.position}")

    @property
    def label(self) -> str:
        """``"head L.H"``, as ``circuit`` names components."""
        return f"head {self.layer}.{self.head}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def space() -> list[tuple[str, int, int, int]]:
    """Every (variable, layer, head, position) the suite may draw."""
    return [
        (v, layer, head, pos)
        for v in VARIABLES
        for layer in LAYERS[v]
        for head in range(N_HEADS)
        for pos in POSITIONS
    ]


def plantable_search(base: Search | None = None) -> Search:
    """``base`` (default: explain's default search) restricted to where a variable may
    be planted: one head's output in layer 0 or 1, at one position. A detector scored
    on a planted suite looks there."""
    return replace(
        base or Search(),
        sites=lambda site: site.head is not None and site.layer in (0, 1),
        positions=lambda positions: len(positions) == 1,
    )


def draw_suite(n: int, seed: int) -> list[Placement]:
    """``n`` placements drawn uniformly from :func:`space`, alternating the variables.

    Alternating keeps both variables in every suite; within a variable the draw is
    uniform and without replacement while the space lasts.
    """
    if n < 1:
        raise BracketLensError(f"a suite needs at least one model, got {n}")
    rng = np.random.default_rng(seed)
    by_var = {v: [s for s in space() if s[0] == v] for v in VARIABLES}
    order = {v: list(rng.permutation(len(opts))) for v, opts in by_var.items()}
    out = []
    for i in range(n):
        v = VARIABLES[i % len(VARIABLES)]
        if not order[v]:
            order[v] = list(rng.permutation(len(by_var[v])))
        _, layer, head, pos = by_var[v][order[v].pop()]
        out.append(Placement(f"planted-{i}", v, layer, head, pos, seed=seed * 1000 + i))
    return out


def write_suite(placements: list[Placement], path: str | os.PathLike[str]) -> Path:
    """Write the suite file (JSON), refusing to replace one: its answer must stay fixed."""
    path = Path(path)
    if path.exists():
        raise BracketLensError(f"suite file {path} exists; its placements are fixed, reuse it")
    path.write_text(json.dumps([p.to_json() for p in placements], indent=2))
    return path


def read_suite(path: str | os.PathLike[str]) -> list[Placement]:
    """The placements of a suite file."""
    try:
        return [Placement(**row) for row in json.loads(Path(path).read_text())]
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise BracketLensError(f"{path} is not a readable suite file ({e})") from None
