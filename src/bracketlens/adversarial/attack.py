"""The adversarial search: its stages chained under one evaluation budget."""

from __future__ import annotations

import numpy as np

from bracketlens.adversarial.result import AttackResult
from bracketlens.adversarial.scoring import Scorer
from bracketlens.adversarial.search import (
    BEAM_BALANCED,
    BEAM_UNBALANCED,
    COURSE,
    STRUCTURED,
    beam_stage,
    course_stage,
    structured_stage,
)
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer

DEFAULT_BUDGET = 200_000
STRUCTURED_SHARE = 0.35  # of the budget: enough for every structured family at the default
UNBALANCED_SHARE = 0.7  # of what is left for the beams: the course's question comes first


def attack(
    model: BracketTransformer,
    *,
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
    top: int = 20,
    beam_width: int = 32,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> AttackResult:
    """Search for the strings the model gets most confidently wrong.

    Two targets: unbalanced strings the model calls balanced with the highest
    P(balanced), and balanced strings it calls unbalanced with the lowest. Stages,
    in order: the course's ``A)(B`` family, structured families
    (:func:`~bracketlens.adversarial.search.structured_stage`), then a beam search
    for each target (:func:`~bracketlens.adversarial.search.beam_stage`). Every
    candidate is labelled by the ground-truth checker before it counts.

    Args:
        model: the classifier under attack.
        budget: the most strings scored by the model (each string counts once).
        seed: seeds every random choice; the same seed gives the same result.
        top: findings of each label kept in the result.
        beam_width: strings kept in each beam.
        batch_size: strings per forward pass.
        progress: show a progress bar on stderr.

    Raises:
        BracketLensError: ``budget``, ``top`` or ``beam_width`` is not a positive integer.

    Example:
        >>> result = attack(load_model(), budget=20_000)  # doctest: +SKIP
        >>> result.best.string, result.best.p_balanced  # doctest: +SKIP
    """
    for name, value in (("budget", budget), ("top", top), ("beam_width", beam_width)):
        _check_positive(name, value)
    rng = np.random.default_rng(seed)
    stages = (COURSE, STRUCTURED, BEAM_UNBALANCED, BEAM_BALANCED)
    scorer = Scorer(model, budget, stages=stages, batch_size=batch_size, progress=progress)
    try:
        course_stage(scorer)
        structured_stage(scorer, rng, cap=int(STRUCTURED_SHARE * budget))
        share = int(UNBALANCED_SHARE * scorer.remaining)
        beam_stage(scorer, rng, balanced=False, budget=share, width=beam_width)
        beam_stage(scorer, rng, balanced=True, budget=scorer.remaining, width=beam_width)
    finally:
        scorer.close()
    return AttackResult(
        unbalanced=tuple(scorer.best(False, top)),
        balanced=tuple(scorer.best(True, top)),
        stages=scorer.summaries(),
        evaluations=scorer.used,
        budget=budget,
        seed=seed,
    )


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BracketLensError(f"{name} must be a positive integer, got {value!r}")
