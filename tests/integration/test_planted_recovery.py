"""A planted model, trained in the slow tier, is found by ``explain`` where it was planted.

Budget: 600 steps of the planting recipe (a 600-step schedule) and a quick search
restricted to the plantable places: 150 s to 4 minutes at one thread on 2 cores,
depending on the load beside it.
"""

import pytest

from bracketlens import evaluation_set
from bracketlens.algorithms import Search, explain
from bracketlens.algorithms.result import THRESHOLD
from bracketlens.planted import IITConfig, Placement, plantable_search, train_planted

#: the negative check in head 1.1 at position 2 (the suite's planted-1, seed 1)
PLACEMENT = Placement("slow-tier", "negative", 1, 1, 2, seed=1)
HERE = "1.1@2"


@pytest.mark.slow(minutes=3)
def test_explain_finds_the_planted_variable_where_it_was_planted():
    planted = train_planted(PLACEMENT, IITConfig(steps=600, n_eval=2_000))
    record = planted.record
    assert record["accuracy"] >= 0.95
    iia = record["iia"]
    rivals = [v for k, v in iia.items() if k != HERE and int(k.split(".")[0]) in (0, 1)]
    assert iia[HERE] >= 0.85 and iia[HERE] > max(rivals) + 0.1, iia
    result = explain(
        planted.model,
        evaluation_set(2_000, seed=0),
        seed=0,
        models=["elevation_and_negative"],
        search=plantable_search(Search.quick()),
    )
    found = {a.variable: a for a in result.variables}
    negative = found["negative"]
    site = negative.location.site
    assert (site.layer, site.head, tuple(negative.location.positions)) == (1, 1, (2,))
    assert negative.iia.value >= THRESHOLD
