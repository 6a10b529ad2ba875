"""How hard ``explain`` looks: pair counts, screening, rotations, which models, and the
named presets (``default``, ``thorough``, ``quick``, ``smoke``).

A search's settings are numbers, so a result can be stored and found again under them
(:meth:`Search.settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from bracketlens.algorithms.locations import Site
from bracketlens.algorithms.pairs import PairCounts
from bracketlens.errors import BracketLensError


@dataclass(frozen=True)
class Search:
    """How hard to look: pair counts, screening sample, DAS settings, which hooks."""

    counts: PairCounts = field(default_factory=PairCounts)
    screen_per_cell: int = 16  # validation pairs per (group, kind) used to screen
    das_top: int = 2  # locations that get rotations, per group of models (see explain._search)
    das_dims: tuple[int, ...] = (1, 4, 8)
    das_steps: int = 30
    sites: Callable[[Site], bool] | None = None  # None: every hook
    positions: Callable[[tuple[int, ...]], bool] | None = None  # None: every position (set)
    whole_vector: bool = True  # False: only rotations compete (dim >= 1)
    # with no models named, the grammar's models beside the registered ones: "all" (shortcut
    # add-ons and per-position models too), "cores" (the exact rules alone) or "none"
    generated: str = "all"
    # the models of the best validation scores are confirmed on more test pairs per
    # (group, kind): their guards' bounds are tight enough to pass a pair kind whose IIA
    # is 0.925, where 96 pairs need 0.97
    confirm_models: int = 4
    confirm_test: int = 576
    # screen a shared variable's models in groups of one core, each group's best locations
    # getting rotations (see explain._search): a wider search, and a slower one
    group_screens: bool = False
    # rotations, too, in the residual stream between blocks at every position: a variable
    # spread along the string that the screen cannot rank (there the whole vector is the run)
    spread: bool = True
    # the confirmed models' best rotations fitted again from where they stopped: how many
    # per model and variable (0: none), and with how many more steps
    refine_top: int = 2
    refine_steps: int = 90
    # the probe map (:mod:`.probes`): linear probes of the grammar's variables at every
    # single-position site, for the reader; it steers nothing
    probes: bool = True
    # name each passing variable at its earliest passing location (:mod:`.earliest`)
    walk_back: bool = True

    @classmethod
    def quick(cls) -> Search:
        """A lighter search for the report: fewer pairs, one rotation at the best location,
        and the registered models only (``bracketlens explain`` also tests the grammar's).

        Its rotation gets 10 Adam steps of up to 96 pairs: seven to ten passes over the
        64 to 128 training pairs a variable has on the bundled model.
        """
        return cls(PairCounts(train=32, validation=24, test=48), screen_per_cell=8, das_top=1,
                   das_dims=(1,), das_steps=10, generated="none", confirm_models=0,
                   refine_top=0, walk_back=False)  # fmt: skip

    @classmethod
    def thorough(cls) -> Search:
        """The default search, with its confirmed models measured on four times the test
        pairs (2,304 per base group and pair kind): a pair kind's lower bound clears 0.9
        at an observed IIA of 0.912, where the default's 576 pairs need 0.925. The same
        locations and fits, in about a quarter more time (2.5 minutes on 10,000 strings).
        """
        return cls(confirm_test=4 * cls.confirm_test)

    @classmethod
    def smoke(cls) -> Search:
        """The least search that still gives a verdict, alignments and a closest model: for
        the tiny sweep recipe and tests.

        The registered models only (no generator counts, no probe map): a few seconds at one
        thread on a few hundred strings; its IIA rests on a few dozen pairs.
        """
        return cls(PairCounts(train=16, validation=16, test=24), screen_per_cell=4, das_top=1,
                   das_dims=(1,), das_steps=5, generated="none", confirm_models=0,
                   refine_top=0, spread=False, probes=False, walk_back=False)  # fmt: skip

    def settings(self) -> dict[str, object]:
        """The numbers that set this search, as JSON (for a hash of what determines a result).

        A search restricted by ``sites`` or ``positions`` has no such form: functions are
        not numbers.
        """
        functions = ("sites", "positions")
        if any(getattr(self, name) is not None for name in functions):
            raise BracketLensError("a search restricted to some sites or positions has no settings")
        # every field but those: a field added later is in the hash without a second list
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
            if name not in functions
        }

    @classmethod
    def named(cls, name: str) -> Search:
        """``"default"``, ``"thorough"``, ``"quick"`` or ``"smoke"``."""
        presets: dict[str, Callable[[], Search]] = {
            "default": cls,
            "thorough": cls.thorough,
            "quick": cls.quick,
            "smoke": cls.smoke,
        }
        if name not in presets:
            raise BracketLensError(f"unknown search {name!r}; use one of {', '.join(presets)}")
        return presets[name]()
