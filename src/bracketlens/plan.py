"""Which stages of the analysis each command runs, and what each stage asks of the passes.

This module imports no torch, so that ``bracketlens --help`` stays fast: the CLI reads the
table from here, and :mod:`bracketlens.pipeline` runs what it names.

>>> sorted(s.value for s in COMMAND_STAGES["circuit"])
['interventions', 'mean_ablation']
>>> parse_stages(["circuits", "explain"]) == {Stage.CIRCUITS, Stage.EXPLAIN}
True
>>> PassPlan.of(COMMAND_STAGES["circuit"]).ablation_table
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from bracketlens.errors import BracketLensError

DEFAULT_CAUSAL_N = 5_000  # held-out strings the interventions run on


class Stage(StrEnum):
    """An optional stage of :func:`bracketlens.pipeline.run` (localisation always runs)."""

    CIRCUITS = "circuits"  # the elevation and negative-head analyses
    INTERVENTIONS = "interventions"  # resampling tests, path and attribution patching
    MEAN_ABLATION = "mean_ablation"  # the table of every component mean-ablated
    EXPLORER = "explorer"  # the weights and means the report's in-page model runs on
    EXPLAIN = "explain"  # which causal model the network runs (interchange interventions)
    DISCOVER = "discover"  # the circuit found without a template (edge scores, faithfulness)


# command -> the stages it runs
COMMAND_STAGES: dict[str, frozenset[Stage]] = {
    "analyze": frozenset({Stage.CIRCUITS, Stage.INTERVENTIONS}),
    "report": frozenset(
        {Stage.CIRCUITS, Stage.INTERVENTIONS, Stage.EXPLAIN, Stage.EXPLORER, Stage.DISCOVER}
    ),
    "circuit": frozenset({Stage.INTERVENTIONS, Stage.MEAN_ABLATION}),
    "seeds": frozenset(),
}


def parse_stages(names: Iterable[str | Stage]) -> frozenset[Stage]:
    """The stages named, or :class:`BracketLensError` naming one that does not exist."""
    out = set()
    for name in names:
        try:
            out.add(Stage(name))
        except ValueError:
            known = ", ".join(s.value for s in Stage)
            raise BracketLensError(f"unknown stage {name!r}: use one of {known}") from None
    return frozenset(out)


@dataclass(frozen=True)
class PassPlan:
    """What the shared passes keep for the stages that follow them, declared once here.

    Attributes:
        read_feeders: the read pass also sums what feeds the negative head (circuits).
        ablation_table: every held-out string is mean-ablated and the table is kept
            (mean_ablation); otherwise only the strings the start-close role is judged on.
        intervention_slices: the ablations' clean pass keeps the activations the
            resampling tests and path patching read (interventions).
    """

    read_feeders: bool
    ablation_table: bool
    intervention_slices: bool

    @classmethod
    def of(cls, stages: frozenset[Stage]) -> PassPlan:
        return cls(
            read_feeders=Stage.CIRCUITS in stages,
            ablation_table=Stage.MEAN_ABLATION in stages,
            intervention_slices=Stage.INTERVENTIONS in stages,
        )
