"""The three search stages: the course's family, structured families, beam search.

Each stage charges its evaluations to a :class:`~bracketlens.adversarial.scoring.Scorer`
under its own name; the findings are read back from the scorer at the end.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import numpy as np

from bracketlens.adversarial.families import (
    DIP_JOINTS,
    balanced_family,
    course_family,
    flips,
    joined,
    neighbours,
    perturb,
    shapes,
    swaps,
    tallest_dips,
)
from bracketlens.adversarial.result import Finding, ranked
from bracketlens.adversarial.scoring import Scorer
from bracketlens.data.tokens import MAX_PARENS
from bracketlens.data.truth import is_balanced

COURSE = "course A)(B"
STRUCTURED = "structured"
BEAM_UNBALANCED = "beam: unbalanced"
BEAM_BALANCED = "beam: balanced"

N_BEST_LENGTHS = 2  # total lengths, ranked by the tallest-string joints, that get the wide families
KICKS_PER_MEMBER = 4  # restart candidates per beam member once a beam has converged
MAX_STALE = 8  # rounds in a row that score nothing new before a beam gives up


def course_stage(scorer: Scorer) -> list[Finding]:
    """Score the course's ``A + ")(" + B`` family (tallest A and B, 40 parens)."""
    return scorer.score(course_family(), COURSE)


def structured_stage(scorer: Scorer, rng: np.random.Generator, cap: int) -> None:
    """Score structured families, widest last, stopping after ``cap`` evaluations.

    First, at every length: tallest strings joined by each dip joint, and the
    structured balanced strings themselves. Then, at the lengths where the tallest
    joints fooled the model most: one-edit variants of the two-block shapes, shapes
    of up to two blocks joined by ``)(`` or ``))((``, and, in a seeded random order
    so that a small cap takes a fair sample, the same with up to three blocks.
    """
    stop = scorer.used + cap
    # alternate the two lists so that even a small cap seeds both beams
    first = _interleave(tallest_dips(), balanced_family(MAX_PARENS, 3))
    found = scorer.score(first, STRUCTURED, stop - scorer.used)
    lengths = _best_lengths([f for f in found if not f.label], N_BEST_LENGTHS)
    two = partial(shapes, max_blocks=2)
    edits = [e for n in lengths for s in two(n) for e in (*swaps(s), *flips(s))]
    pairs = [s for n in lengths for s in joined(two, DIP_JOINTS[:2], n)]
    scorer.score(edits + pairs, STRUCTURED, stop - scorer.used)
    if scorer.used >= stop:
        return  # spare building the widest family
    three = partial(shapes, max_blocks=3)
    wide = [s for n in lengths for s in joined(three, DIP_JOINTS[:2], n)]
    order = rng.permutation(len(wide))
    scorer.score((wide[i] for i in order), STRUCTURED, stop - scorer.used)


def beam_stage(
    scorer: Scorer,
    rng: np.random.Generator,
    *,
    balanced: bool,
    budget: int,
    width: int,
) -> None:
    """Beam search over single edits for strings of one label that fool the model.

    The beam starts from the ``width`` wrongest findings of that label so far. Each
    round scores the whole neighbourhood (:func:`~bracketlens.adversarial.families.neighbours`)
    of every beam member not yet expanded, in one batched call, keeping only
    neighbours of the same label. When every member is expanded the beam has
    converged, and it restarts from random multi-edit kicks of the best findings.
    """
    stage = BEAM_BALANCED if balanced else BEAM_UNBALANCED
    stop = scorer.used + budget
    beam = scorer.best(balanced, width)
    expanded: set[str] = set()
    stale = 0
    while beam and scorer.used < stop and stale < MAX_STALE:
        frontier = [f.string for f in beam if f.string not in expanded]
        if frontier:
            expanded.update(frontier)
            candidates = [n for s in frontier for n in neighbours(s)]
        else:
            candidates = _kicks(scorer.best(balanced, width), rng)
        same_label = (c for c in candidates if is_balanced(c) == balanced)
        new = scorer.score(same_label, stage, stop - scorer.used)
        stale = 0 if new else stale + 1
        # a restart replaces the converged beam, so that it climbs from the kicks
        keep = beam if frontier else []
        beam = ranked([*keep, *new])[:width] or beam


def _kicks(seeds: list[Finding], rng: np.random.Generator) -> list[str]:
    """Random restarts: each seed string after 2 to 6 random single edits."""
    return [
        perturb(f.string, rng, int(rng.integers(2, 7)))
        for f in seeds
        for _ in range(KICKS_PER_MEMBER)
    ]


def _best_lengths(findings: list[Finding], k: int) -> list[int]:
    """The ``k`` string lengths whose wrongest finding is wrongest (longest on ties)."""
    best: dict[int, float] = defaultdict(lambda: -np.inf)
    for f in findings:
        best[len(f.string)] = max(best[len(f.string)], f.wrongness)
    return sorted(best, key=lambda n: (-best[n], -n))[:k]


def _interleave(a: list[str], b: list[str]) -> list[str]:
    """``a[0], b[0], a[1], b[1], ...``, then the rest of the longer list."""
    n = min(len(a), len(b))
    return [s for pair in zip(a[:n], b[:n], strict=True) for s in pair] + a[n:] + b[n:]
