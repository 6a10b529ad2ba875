"""Moved: :mod:`bracketlens.seeds` (re-exported here)."""

from bracketlens.seeds import (
    ROLES,
    SHORT_STEPS,
    SeedRun,
    recurrence,
    seeds_json,
    short_recipe,
    train_and_localise,
)

__all__ = [
    "ROLES",
    "SHORT_STEPS",
    "SeedRun",
    "recurrence",
    "seeds_json",
    "short_recipe",
    "train_and_localise",
]
