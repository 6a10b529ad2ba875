"""The earliest location where a variable passes: the one explain names.

The screen ranks whole-vector patches, and a location late in the run often ranks
first: the residual stream that a head or an MLP writes a variable into carries it
as well as the component does, one step later. So beside the screen's best
locations, the components of the block that writes each of them
(:func:`.locations.writers`) get whole-vector patches, which compete in each model's
choice like the others (of equal validation scores, the earliest is chosen:
:func:`.choice.best_fit`).

The chosen patch is the one of the best validation score, not always the earliest
that passes: the validation pairs are few, and several patches clear the bars by a
hair. So once it passes its guards on the test pairs, every location fitted earlier
in forward order (:attr:`.locations.Site.order`), each with the patch of the model's
best validation score there, is measured on the same test pairs with the same
guards, and the earliest one that passes is the variable's named location. The
verdict is the chosen patch's: a variable whose chosen patch fails is not tried
again, so the walk moves a passing variable's location and never makes one pass.
The alignment lists every location that passed (``passing_at``) and the chosen one
(``chosen_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from bracketlens.algorithms.choice import Candidates, Fit, same_patch
from bracketlens.algorithms.locations import Location, writers
from bracketlens.algorithms.result import Alignment
from bracketlens.model.config import ModelConfig

if TYPE_CHECKING:
    from bracketlens.algorithms.search import Search


def walk_fits(locations: list[Location], cfg: ModelConfig, search: Search) -> list[Fit]:
    """Whole-vector patches at the writers of ``locations`` that the search allows and
    that are not among them already, once each (none where whole vectors are not tried)."""
    if not (search.walk_back and search.whole_vector):
        return []
    seen = {(same_patch(loc.site, cfg.n_layers), loc.positions) for loc in locations}
    out: list[Fit] = []
    for loc in locations:
        for w in writers(loc, cfg):
            key = (same_patch(w.site, cfg.n_layers), w.positions)
            allowed = (search.sites is None or search.sites(w.site)) and (
                search.positions is None or search.positions(w.positions)
            )
            if allowed and key not in seen:
                seen.add(key)
                out.append((w, 0, None))
    return out


def earlier_fits(found: Candidates, member: int, chosen: Location) -> list[int]:
    """One fit at each location before ``chosen`` in forward order, earliest first: the
    one of the model's best validation score there (the first of equal ones)."""
    scores = np.nan_to_num(np.asarray(found.fit_scores[member], float), nan=-np.inf)
    best: dict[Location, int] = {}
    for i, (loc, _, _) in enumerate(found.fits):
        if loc.site.order < chosen.site.order and (
            loc not in best or scores[i] > scores[best[loc]]
        ):
            best[loc] = i
    return sorted(
        best.values(), key=lambda i: (found.fits[i][0].site.order, found.fits[i][0].positions)
    )


def walk_back(
    found: Candidates, member: int, measure: Callable[[int | None], Alignment]
) -> Alignment:
    """The alignment of the model's chosen patch, at the earliest location that passes
    where that patch passes; the chosen patch's alignment otherwise.

    ``measure(fit)`` scores a fit of ``found.fits`` (None: the chosen one) on the test
    pairs with the guards (:func:`.confirm.confirm`), so every candidate is measured on the
    same pairs with the same guards; the result lists every location that passed, in
    forward order.
    """
    chosen = measure(None)
    if not chosen.passes:
        return chosen
    passing = [chosen]
    for i in earlier_fits(found, member, chosen.location):
        tried = measure(i)
        if tried.passes:
            passing.append(tried)
    passing.sort(key=lambda a: a.location.site.order)  # stable: the best score first on ties
    where = tuple(dict.fromkeys(a.location for a in passing))
    return replace(passing[0], passing_at=where, chosen_at=chosen.location)
