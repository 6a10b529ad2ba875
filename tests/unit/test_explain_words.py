"""explain's verdict in plain words: where a variable lives."""

from __future__ import annotations

import pytest

from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.words import where_words
from bracketlens.model.names import act_name


@pytest.mark.parametrize(
    ("hook", "layer", "head", "positions", "words"),
    [
        ("resid_mid", 1, None, (0, 1), "positions 0-1 after layer 1's attention"),
        ("resid_pre", 2, None, tuple(range(42)), "every position entering layer 2"),
        ("resid_pre", 1, None, tuple(range(1, 42)), "every position past [start] entering layer 1"),
        ("z", 2, 1, (0,), "position 0 in head 2.1"),
        ("post", 0, None, (3, 4, 5), "positions 3-5 in layer 0's MLP"),
        ("resid_pre", 0, None, (1,), "position 1 at the input"),
    ],
)
def test_where_words(hook, layer, head, positions, words) -> None:
    location = Location(Site(act_name(hook, layer), head, layer), positions)
    assert where_words(location) == words
