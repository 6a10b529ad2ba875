"""Universality: train several seeds, localise each, and count which roles recur where.

Each seed's roles come from the pipeline's localisation stages
(:func:`bracketlens.pipeline.run` with no further stage): found on one half of a
fresh sample, the start-close component by ablations on the other half.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bracketlens.analysis import SCHEMA_VERSION
from bracketlens.data.generate import evaluation_set
from bracketlens.localisation import ROLE_NAMES, Localisation, RoleFinding
from bracketlens.model.train import TrainConfig, train
from bracketlens.pipeline import run

SHORT_STEPS = 3000  # a shorter recipe than the default: enough for the circuit to form
ROLES = ROLE_NAMES


def short_recipe(steps: int = SHORT_STEPS) -> TrainConfig:
    """The per-seed training recipe: the default one, shorter, with smaller held-out sets."""
    return TrainConfig(steps=steps, n_eval=2000, n_near_miss=500)


@dataclass(frozen=True)
class SeedRun:
    """One trained seed: its accuracy and where its roles sit."""

    seed: int
    accuracy: float
    localisation: Localisation

    def role(self, name: str) -> RoleFinding:
        finding: RoleFinding = getattr(self.localisation, name)
        return finding


def train_and_localise(
    seeds: Sequence[int],
    *,
    base: TrainConfig | None = None,
    n_eval: int = 8000,
    on_seed: Callable[[int], None] | None = None,
) -> list[SeedRun]:
    """Train one model per seed (``base`` recipe, short by default) and localise each.

    Args:
        n_eval: strings per seed: localisation fits on half of them (split seed 0).
    """

    base = base or short_recipe()
    runs = []
    for seed in seeds:
        if on_seed is not None:
            on_seed(seed)
        model = train(replace(base, seed=seed), progress=False).model
        data = evaluation_set(n_eval, seed=10_000 + seed)  # the same kind of sample per seed
        found = run(model, data, stages=())
        runs.append(SeedRun(seed, found.evaluation.accuracy, found.localisation))
    return runs


def recurrence(runs: Sequence[SeedRun]) -> dict[str, dict[str, int]]:
    """For each role, how many seeds put it in each location ("not found" included)."""
    return {
        name: dict(Counter(run.role(name).location or "not found" for run in runs))
        for name in ROLES
    }


def seeds_json(runs: Sequence[SeedRun]) -> dict[str, object]:
    """The JSON of ``bracketlens seeds``: per-seed roles with evidence, and the recurrence."""
    return {
        "schema_version": SCHEMA_VERSION,
        "runs": [
            {"seed": r.seed, "accuracy": r.accuracy, "roles": r.localisation.to_json()}
            for r in runs
        ],
        "recurrence": recurrence(runs),
    }
