"""Sweeps: train many seeds (in-process or on Ray), localise and explain each, and count.

>>> from bracketlens.sweeps import Sweep, get_recipe, run_sweep  # doctest: +SKIP
>>> result = run_sweep(Sweep(range(4), get_recipe("tiny"), Path("sweep"), workers=2))  # doctest: +SKIP
>>> result.to_json()["summary"]["roles"]["elevation_head"]  # doctest: +SKIP
"""

from bracketlens.sweeps.recipes import RECIPES, Recipe, get_recipe, short_recipe
from bracketlens.sweeps.runner import Sweep, SweepResult, run_sweep
from bracketlens.sweeps.summary import summarise
from bracketlens.sweeps.task import ROLES, SeedResult, run_seed

__all__ = [
    "RECIPES",
    "ROLES",
    "Recipe",
    "SeedResult",
    "Sweep",
    "SweepResult",
    "get_recipe",
    "run_seed",
    "run_sweep",
    "short_recipe",
    "summarise",
]
