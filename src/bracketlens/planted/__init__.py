"""Models with a known computation, to score detectors on.

:mod:`.suite` declares where a variable may be planted and fixes a suite of
placements in a file; :mod:`.iit` trains a model per placement with
interchange intervention training and measures interchange accuracy everywhere.
:mod:`.circuits` declares whole circuits (a high-level graph, its true nodes and
edges), :mod:`.siit` plants them with strict interchange intervention training,
and :mod:`.score` scores circuit finders against them.
"""

from bracketlens.planted.iit import IITConfig, Planted, interchange_accuracy, train_planted
from bracketlens.planted.suite import (
    Placement,
    draw_suite,
    plantable_search,
    read_suite,
    space,
    write_suite,
)

__all__ = [
    "IITConfig",
    "Placement",
    "Planted",
    "draw_suite",
    "interchange_accuracy",
    "plantable_search",
    "read_suite",
    "space",
    "train_planted",
    "write_suite",
]
