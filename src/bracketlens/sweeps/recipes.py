"""Named training-and-analysis recipes for seed sweeps, each with a stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from bracketlens.errors import BracketLensError
from bracketlens.model.train import TrainConfig

SHORT_STEPS = 3000  # a shorter recipe than the default: enough for the circuit to form


def short_recipe(steps: int = SHORT_STEPS) -> TrainConfig:
    """The per-seed training recipe: the default one, shorter, with smaller held-out sets."""
    return TrainConfig(steps=steps, n_eval=2000, n_near_miss=500)


@dataclass(frozen=True)
class Recipe:
    """How one seed of a sweep is trained and analysed.

    Attributes:
        name: the name users pass to ``--recipe``.
        train: the training configuration (its ``seed`` is replaced per task).
        n_analysis: strings of the evaluation distribution that localisation and
            ``explain`` measure on (``evaluation_set(n_analysis, 10_000 + seed)``).
        search: how hard ``explain`` looks (``Search.named``): ``"default"``, as
            ``bracketlens explain`` does, or ``"smoke"`` for the tiny recipe.
    """

    name: str
    train: TrainConfig
    n_analysis: int = 4000
    search: str = "default"

    @property
    def hash(self) -> str:
        """A hash of everything that determines a seed's results except the seed.

        The name is left out, so a renamed recipe keeps its results; the version of
        bracketlens is checked beside the hash, not inside it.
        """
        train = {k: v for k, v in asdict(self.train).items() if k != "seed"}
        fields: dict[str, object] = {"train": train, "n_analysis": self.n_analysis}
        # here, not at the top: the sweep imports explain's package only where it is used
        from bracketlens.algorithms.search import Search
        from bracketlens.algorithms.store import search_fields

        # the search's settings, not its name: a preset whose numbers change (the default's
        # too) gets new results; and the models tested and the guards they must clear: a
        # verdict of "none" found with fewer models or other guards is not this recipe's.
        # The probe map steers nothing and a row does not hold it
        fields |= search_fields(Search.named(self.search), probes=False)
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_steps(self, steps: int | None) -> Recipe:
        """This recipe with another number of training steps (validated); None keeps it."""
        return self if steps is None else replace(self, train=replace(self.train, steps=steps))

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "hash": self.hash, "steps": self.train.steps}


RECIPES: dict[str, Recipe] = {
    "tiny": Recipe(
        "tiny",
        TrainConfig(n_train=2000, steps=40, batch_size=64, warmup=10, n_eval=300, n_near_miss=100),
        n_analysis=300,
        search="smoke",
    ),
    "short": Recipe("short", short_recipe()),
    "default": Recipe("default", TrainConfig(n_eval=10_000, n_near_miss=2000)),
}


def get_recipe(name: str, steps: int | None = None) -> Recipe:
    """The recipe called ``name``, optionally with another number of steps."""
    if name not in RECIPES:
        raise BracketLensError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name].with_steps(steps)
