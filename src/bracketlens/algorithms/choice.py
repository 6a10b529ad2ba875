"""Where a variable's patch may be, and which patch each model chooses.

The screen scores whole-vector patches at every (hook, position set) on a few
validation pairs; the best few locations get rotations; each model that has the
variable then chooses among the fitted patches on its own validation pairs, by the
worst of the IIA guards' margins (:func:`choice_score`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from bracketlens.algorithms.align import outcome, screen
from bracketlens.algorithms.causal import Variable
from bracketlens.algorithms.guards import IIA, NULL_FLIPS, TELLING_DECISION
from bracketlens.algorithms.locations import Location, Site, pair_activations, position_sets, sites
from bracketlens.algorithms.pairs import KINDS, Pairs, concat
from bracketlens.algorithms.result import ScreenMap, kind_mean
from bracketlens.data.dataset import BracketDataset
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

if TYPE_CHECKING:
    from bracketlens.algorithms.search import Search


Fit = tuple[Location, int, "Tensor | None"]  # (location, dim, basis; None: whole vector)


@dataclass(frozen=True)
class Candidates:
    screen: ScreenMap
    fits: tuple[Fit, ...]
    chosen: tuple[Fit, ...]  # per model that has the variable: its best fit on its validation
    validation_iia: tuple[float, ...]  # per model: that fit's kind-mean IIA on its validation
    score: tuple[float, ...]  # per model: that fit's worst margin on its validation
    fit_scores: tuple[tuple[float, ...], ...] = ()  # per model: every fit's score
    # per fit: which of every model's validation pairs (concatenated) it gets right
    correct: tuple[np.ndarray, ...] = ()
    # per model: every fit's kind-mean IIA on its validation pairs
    fit_iia: tuple[tuple[float, ...], ...] = ()


def top_locations(screen_map: ScreenMap, n_top: int, n_layers: int) -> list[Location]:
    """The ``n_top`` screened locations of the best mean IIA over pair kinds, one of each
    patch: ``resid_post L`` and ``resid_pre L+1`` at the same positions are one patch, and
    would take two places.

    Whole-vector patches rank them: a late location that carries the decision scores
    high here and low on telling pairs, but a rotation there may carry the variable
    alone, so the telling pairs judge the fitted patches, not the screen.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # locations not screened are all NaN
        score = np.nanmean(screen_map.iia, axis=2)
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), axis=None, kind="stable")
    sets, site_list = screen_map.positions, screen_map.site_objects
    out: list[Location] = []
    seen: set[tuple[Site, tuple[int, ...]]] = set()
    for i in order:
        if len(out) == n_top or np.isnan(score.flat[i]):
            break
        site, positions = site_list[i // len(sets)], sets[i % len(sets)]
        if (same_patch(site, n_layers), positions) not in seen:
            seen.add((same_patch(site, n_layers), positions))
            out.append(Location(site, positions))
    if not out:  # nothing screened (no validation pairs): the first location stands in
        out.append(Location(site_list[order[0] // len(sets)], sets[order[0] % len(sets)]))
    return out


def merge_ranked(ranked: list[list[Location]], n_layers: int) -> list[Location]:
    """Each group's locations in turn (every group's best first), one of each patch, at most
    the first group's number plus one per other group."""
    cap = len(ranked[0]) + len(ranked) - 1
    out: list[Location] = []
    seen: set[tuple[Site, tuple[int, ...]]] = set()
    for rank in range(max(len(r) for r in ranked)):
        for locations in ranked:
            if rank < len(locations) and len(out) < cap:
                loc = locations[rank]
                if (same_patch(loc.site, n_layers), loc.positions) not in seen:
                    seen.add((same_patch(loc.site, n_layers), loc.positions))
                    out.append(loc)
    return out


def choose(
    model: BracketTransformer,
    data: BracketDataset,
    screen_map: ScreenMap,
    fits: list[Fit],
    members: list[Pairs],
    known: tuple[np.ndarray, ...] = (),
) -> Candidates:
    """Each model's choice among ``fits`` on its own validation pairs (``members``: the
    pairs of each model that has the variable), by :func:`choice_score`.

    ``known``: the validation outcomes of the first fits, from an earlier choice on the
    same pairs (:attr:`Candidates.correct`); only the fits after them are run.
    Of fits of one score, the earliest in forward order is chosen (:func:`best_fit`).
    """
    # every model's validation pairs through one pass per fit, then scored model by model
    vals = [m.in_split("validation") for m in members]
    full = concat(vals)
    new = fits[len(known) :]
    acts = pair_activations(model, data.tokens, full.base, full.source,
                            [loc.site for loc, _, _ in new])  # fmt: skip
    correct = [*known, *(outcome(model, acts, loc, basis).predicted == full.label
                         for loc, _, basis in new)]  # fmt: skip
    ends = np.cumsum([len(v) for v in vals])
    chosen, iias, scores, every, fit_iia = [], [], [], [], []
    for val_m, end in zip(vals, ends, strict=True):
        rows = slice(end - len(val_m), end)
        mine = [choice_score(c[rows], val_m) for c in correct]
        best = best_fit(mine, fits)
        chosen.append(fits[best])
        fit_iia.append(tuple(kind_mean(c[rows], val_m.kind) for c in correct))
        iias.append(fit_iia[-1][best])
        scores.append(float(mine[best]))
        every.append(tuple(mine))
    return Candidates(screen_map, tuple(fits), tuple(chosen), tuple(iias), tuple(scores),
                      tuple(every), tuple(correct), tuple(fit_iia))  # fmt: skip


def best_fit(scores: list[float], fits: list[Fit]) -> int:
    """The fit of the best score, the earliest in forward order among equal ones (a head
    before the residual stream it writes: where a variable first is); the first without
    any score."""
    values = np.nan_to_num(np.asarray(scores, float), nan=-np.inf)
    if not np.isfinite(values).any():
        return 0
    tied = np.flatnonzero(values == values.max())
    return int(min(tied, key=lambda i: fits[i][0].site.order))


def choice_score(correct: np.ndarray, pairs: Pairs) -> float:
    """The worst of the guards' margins on validation pairs: each pair kind's IIA less its
    bar, and the telling pairs' IIA less theirs (the bar of a location that carries the
    decision, which a patch carrying only the decision misses on every telling pair);
    their mean breaks ties.

    On the ``unchanged`` pairs a miss is a flip of the prediction, so their bar is the
    null flip rate's (at most 5% flips: IIA 0.95), not the other kinds' 0.9. The guards
    on the test pairs fail a model on its worst guard, not on its mean.
    """
    unchanged = KINDS.index("unchanged")
    bars = [1 - NULL_FLIPS if k == unchanged else IIA for k in range(len(KINDS))]
    cells = [float(correct[pairs.kind == k].mean()) - bars[k] for k in range(len(KINDS))
             if (pairs.kind == k).any()]  # fmt: skip
    if pairs.telling.any():
        cells.append(float(correct[pairs.telling].mean()) - TELLING_DECISION)
    if not cells:
        return float("nan")
    return min(cells) + 1e-3 * float(np.mean(cells))


def screen_locations(
    model: BracketTransformer,
    data: BracketDataset,
    causal: str,
    variable: Variable,
    val: Pairs,
    search: Search,
    telling: np.ndarray | None = None,
) -> ScreenMap:
    """Whole-vector IIA by kind (and on the ``telling`` pairs, if given) at every
    (hook, position set) that ``search`` allows."""
    site_list = [s for s in sites(model.cfg) if search.sites is None or search.sites(s)]
    runs = [same_patch(s, model.cfg.n_layers) for s in site_list]
    acts = pair_activations(model, data.tokens, val.base, val.source, runs)
    sets = position_sets(acts.base_tokens.shape[1], variable.position)
    sets = [p for p in sets if search.positions is None or search.positions(p)]
    iia = np.full((len(site_list), len(sets), len(KINDS)), np.nan)
    told = np.full((len(site_list), len(sets)), np.nan)
    done: dict[Site, np.ndarray] = {}
    for i, site in enumerate(site_list):
        # the whole residual stream at every position is the whole run: a trivial alignment
        here = [p for p in sets if len(p) <= 2 or "resid" not in site.hook]
        if runs[i] not in done:
            done[runs[i]] = screen(model, acts, runs[i], here) == val.label[None]
        correct = done[runs[i]]
        rows = [sets.index(p) for p in here]
        for k in range(len(KINDS)):
            if (val.kind == k).any():
                iia[i, rows, k] = correct[:, val.kind == k].mean(axis=1)
        if telling is not None and telling.any():
            told[i, rows] = correct[:, telling].mean(axis=1)
    return ScreenMap(causal, variable.name, tuple(s.label for s in site_list),
                     tuple(s.layer for s in site_list), tuple(sets), iia, tuple(site_list),
                     told if telling is not None else None)  # fmt: skip


def spread_locations(
    cfg: ModelConfig, width: int, variable: Variable, search: Search
) -> list[Location]:
    """The residual stream between blocks at every position, one location per block boundary.

    The screen leaves these out: the whole residual stream at every position is the whole
    run, so a whole-vector patch there aligns with anything. A low-dimensional rotation
    there is a real hypothesis: a variable that every position holds (an average that
    attention spreads along the string), read later wherever the class is read. Only
    rotations are fitted at them. A variable about one position has none.
    """
    if variable.position is not None:
        return []
    every = tuple(range(width))
    out = []
    for layer in range(1, cfg.n_layers):
        site = Site(act_name("resid_pre", layer), None, layer)
        if (search.sites is None or search.sites(site)) and (
            search.positions is None or search.positions(every)
        ):
            out.append(Location(site, every))
    return out


def same_patch(site: Site, n_layers: int) -> Site:
    """The site whose patch is this one's, run from as late a layer as possible: block
    ``L``'s output is block ``L + 1``'s input, so patching ``resid_post L`` is patching
    ``resid_pre L+1`` (and starts a layer later)."""
    if site.hook.endswith("hook_resid_post") and site.layer + 1 < n_layers:
        return Site(act_name("resid_pre", site.layer + 1), None, site.layer + 1)
    return site
