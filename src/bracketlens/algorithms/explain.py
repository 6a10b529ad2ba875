"""Algorithm discovery: which causal model a checkpoint runs, and where each variable lives.

For every variable of every causal model:

1. draw base/source pairs (:mod:`.pairs`), split by base string into train,
   validation and test;
2. *screen* every location with whole-vector patches on a small share of the
   validation pairs (one batched pass per hook, :func:`.align.screen`);
3. at the best few locations, and at every position of the residual stream between
   blocks, fit rotations of dimension 1, 4 and 8 on the train pairs (distributed
   alignment search, :func:`.align.fit_basis`);
4. choose the location and dimension on all validation pairs (:mod:`.choice`); for
   the models of the best validation scores, fit their best rotations again with
   more steps and choose again (:mod:`.refine`);
5. report the interchange intervention accuracy (IIA) on the test pairs, beside a
   control (a patch as strong, elsewhere), the null flip rate and the other guards
   (:mod:`.confirm`, :mod:`.guards`; the verdict: :mod:`.conclude`).

A variable shared by several causal models (the grammar's atoms, ``elevation``...)
is screened and fitted once, on the pairs of every model that has it (each pair with
its own model's counterfactual label); each model then chooses among the fitted
patches on its own validation pairs and tests its choice on its own test pairs.
Each variable's search, refit and test depends only on its own pairs and seeds: on
two cores they run in two processes (:func:`bracketlens.beside.in_two_shares`).

With no models named, explain tests the registered models and the models the
grammar generates (:mod:`.generate`).
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace

import numpy as np

from bracketlens.algorithms.align import fit_basis
from bracketlens.algorithms.causal import MODELS, CausalModel, Values, Variable
from bracketlens.algorithms.choice import (
    Candidates,
    Fit,
    choose,
    merge_ranked,
    screen_locations,
    spread_locations,
    top_locations,
)
from bracketlens.algorithms.conclude import conclude, confirmed_models
from bracketlens.algorithms.confirm import Context, confirm, label_pairs, trivial
from bracketlens.algorithms.earliest import walk_back, walk_fits
from bracketlens.algorithms.generate import default_models, found_by_generator
from bracketlens.algorithms.grammar import CANDIDATE_ATOMS
from bracketlens.algorithms.locations import pair_activations
from bracketlens.algorithms.pairs import Pairs, concat, sample_pairs, string_splits
from bracketlens.algorithms.probes import probe_map
from bracketlens.algorithms.refine import refine_all
from bracketlens.algorithms.result import Alignment, Explanation, ScreenMap
from bracketlens.algorithms.search import Search
from bracketlens.beside import Beside, in_two_shares
from bracketlens.data.dataset import BracketDataset
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer


def explain(
    model: BracketTransformer,
    data: BracketDataset,
    seed: int = 0,
    *,
    models: Sequence[str | CausalModel] | None = None,
    search: Search | None = None,
    split: bool = True,
) -> Explanation:
    """Align every registered causal model with ``model`` on ``data`` and give the verdict.

    Args:
        models: causal models (or names in :data:`~.causal.MODELS`); default: all registered.
        search: how many pairs, locations and rotations to try (the default takes about
            two minutes of two cores on the CLI's 10,000 strings).
        seed: seeds pair sampling, splits, rotations and controls.
        split: run the search in two processes where there are two cores (the same
            result); False where the caller runs several explains in parallel already.
    """
    search = search or Search()
    _check(data)
    where = _device(model) if split else None  # None: one process
    # the probe map needs only the model and the strings: a child makes it beside the rest
    # (the grammar's models, then the search's tails), where there are two cores
    beside = Beside(probe_map, model, data, seed, device=where) if search.probes else None
    with beside or nullcontext():
        result = _align_and_conclude(model, data, seed, models, search, where)
        return replace(result, probes=beside.result()) if beside else result


def _align_and_conclude(
    model: BracketTransformer,
    data: BracketDataset,
    seed: int,
    models: Sequence[str | CausalModel] | None,
    search: Search,
    where: str | None,
) -> Explanation:
    """:func:`explain`'s alignments and verdict, without the probe map."""
    chosen = _resolve(models, search)
    tokens = data.tokens.numpy()
    groups = data.failure_groups.numpy()
    split_of = explain_splits(len(data), seed)
    context = Context(model, data, seed, label_pairs(data, split_of, search, seed))
    drawn = []  # (model, variable, its pairs, its values, shared key)
    for causal in chosen:
        values = causal.values(tokens)
        for variable in causal.intervened:
            pairs = drawn_pairs(causal, variable, values, data, split_of, search, seed)
            if all((pairs.split == s).any() for s in range(3)):  # else: none informative
                column = np.asarray(values[variable.name])
                drawn.append((causal, variable, pairs, column, _shared(variable, column)))
    # a variable shared by several models (the grammar's atoms) is screened and fitted
    # once, on the pairs of all of them (each pair with its own model's label); each
    # model chooses among the fits on its own validation pairs. Two variables are one
    # where they take the same value on every string
    # the drawn variables of each shared variable, in order of first appearance
    shared = [[d for d in drawn if d[-1] == key] for key in dict.fromkeys(d[-1] for d in drawn)]
    founds = _search_all(model, data, shared, search, seed, where)
    screens: list[ScreenMap] = [found.screen for found in founds]
    confirmed = _confirmed(shared, founds, tokens, search)
    if search.refine_top and confirmed:
        founds = refine_all(model, data, shared, founds, confirmed, search, seed, where)
        confirmed = _confirmed(shared, founds, tokens, search)
    searched = _by_model(shared, founds)

    def confirm_share(share: list[tuple[tuple, Candidates, int]]) -> list[Alignment]:
        out = []
        for (causal, variable, pairs, column, _), found, j in share:
            test = pairs.in_split("test")
            if causal.name not in confirmed:
                test = test.thin(search.counts.test, seed)
            measure = functools.partial(confirm, context, causal, variable, test, found, j, column)
            out.append(walk_back(found, j, measure) if search.walk_back else measure(None))
        return out

    # each alignment depends only on its own pairs and fit: two processes share them
    alignments = in_two_shares(confirm_share, searched, _confirm_cost(confirmed), where)
    by_generator = frozenset(
        m.name
        for m in chosen
        if models is None
        and search.generated != "none"
        and not m.generated
        and found_by_generator(m)
    )
    return conclude(chosen, alignments, screens, groups, search, seed, len(data), by_generator)


def explain_splits(n: int, seed: int) -> np.ndarray:
    """Each of ``n`` strings' split (train, validation, test) in :func:`explain` with ``seed``."""
    return string_splits(n, np.random.default_rng([seed, 1]))


def drawn_pairs(
    causal: CausalModel,
    variable: Variable,
    values: Values,
    data: BracketDataset,
    split_of: np.ndarray,
    search: Search,
    seed: int,
) -> Pairs:
    """The pairs :func:`explain` draws for ``variable`` of ``causal``: test pairs enough
    for a confirmed model (the others are tested on a thinned share)."""
    counts = replace(search.counts, test=max(search.counts.test, search.confirm_test))
    rng = np.random.default_rng([seed, zlib.crc32(f"{causal.name}/{variable.name}".encode())])
    return sample_pairs(causal, variable, values, data.tokens.numpy(),
                        data.failure_groups.numpy(), split_of, counts, rng)  # fmt: skip


def _resolve(models: Sequence[str | CausalModel] | None, search: Search) -> list[CausalModel]:
    if models is None:
        registered = list(MODELS.values())
        return default_models(registered, search.generated)
    out = []
    for m in models:
        if isinstance(m, CausalModel):
            out.append(m)
        elif m in MODELS:
            out.append(MODELS[m])
        else:
            raise BracketLensError(f"unknown causal model {m!r}; use one of {', '.join(MODELS)}")
    return out


#: the paren atoms that ride along as add-ons ("starts with ')'")
SHORTCUTS = frozenset(a.name for a in CANDIDATE_ATOMS if a.shortcut)

#: the fewest strings explain runs on (pairs need bases and sources of each label)
MIN_STRINGS = 40


def _check(data: BracketDataset) -> None:
    if len(data) < MIN_STRINGS or data.labels.all() or not data.labels.any():
        raise BracketLensError(
            f"explain needs at least {MIN_STRINGS} strings, balanced and unbalanced ones; "
            "use --n 10000"
        )


def _search(
    model: BracketTransformer,
    data: BracketDataset,
    causal: CausalModel,
    variable: Variable,
    members: list[Pairs],
    cores: list[frozenset[str]],
    search: Search,
    seed: int,
) -> Candidates:
    """Screen every location on a few validation pairs; fit rotations at the best ones;
    let each model that has the variable (``members``: its pairs) choose among them on
    its own validation pairs.

    The counterfactual labels of one variable differ between models (so do their
    informative bases): a patch that serves one model's pairs may fail another's. So
    the models are screened in groups of the same ``cores`` (their other variables, the
    shortcut add-ons aside), and each group's best locations get rotations.
    """
    pairs = concat(members)
    ranked, screen_map = [], None
    for core in dict.fromkeys(cores):
        group = concat([m for m, c in zip(members, cores, strict=True) if c == core])
        val = group.in_split("validation").thin(search.screen_per_cell, seed)
        found = screen_locations(model, data, causal.name, variable, val, search)
        screen_map = screen_map or found  # the first model's group is the one reported
        # a per-position variable has one position per hook: its best hook gets rotations
        n_top = 1 if variable.position is not None else search.das_top
        ranked.append(top_locations(found, n_top, model.cfg.n_layers))
    assert screen_map is not None
    locations = merge_ranked(ranked, model.cfg.n_layers)
    fits: list[Fit] = []
    if search.whole_vector or not search.das_dims:
        fits += [(loc, 0, None) for loc in locations]
    walk = walk_fits(locations, model.cfg, search)
    if search.spread:
        locations += spread_locations(model.cfg, data.tokens.shape[1], variable, search)
    train = pairs.in_split("train")
    acts = pair_activations(model, data.tokens, train.base, train.source,
                            [loc.site for loc in locations])  # fmt: skip
    for j, loc in enumerate(locations):
        for dim in search.das_dims:
            if dim < loc.site.width(model.cfg):
                basis = fit_basis(model, acts, train.label, loc, dim, steps=search.das_steps,
                                  seed=seed + 1000 * j + dim)  # fmt: skip
                fits.append((loc, dim, basis))
    return choose(model, data, screen_map, fits + walk, members)


def _search_all(
    model: BracketTransformer,
    data: BracketDataset,
    shared: list[list[tuple]],
    search: Search,
    seed: int,
    where: str | None,
) -> list[Candidates]:
    """:func:`_search` for each shared variable (``shared``: its drawn variables, one per
    model that has it), in two processes where there are two cores (``where``: the
    model's device; None: one process): each variable's search depends only on its own
    pairs and seeds."""

    def search_share(share: list[list[tuple]]) -> list[Candidates]:
        out = []
        for mine in share:
            cores = [_core(d[0], d[1]) if search.group_screens else frozenset() for d in mine]
            out.append(_search(model, data, mine[0][0], mine[0][1], [d[2] for d in mine],
                               cores, search, seed))  # fmt: skip
        return out

    def cost(mine: list[tuple]) -> float:
        """Seconds, about, on the bundled model (the longest searches start first): Adam
        steps of every rotation, then every pair through the screen and the validation
        runs (one location for a per-position variable)."""
        per_position = mine[0][1].position is not None
        locations = 1 if per_position else search.das_top + model.cfg.n_layers - 1
        pairs = sum(len(d[2].base) for d in mine)
        return locations * len(search.das_dims) * search.das_steps / 50 + pairs / 6200

    return in_two_shares(search_share, shared, cost, where)


def _by_model(
    shared: list[list[tuple]], founds: list[Candidates]
) -> list[tuple[tuple, Candidates, int]]:
    """(drawn variable, its shared variable's candidates, its index among their models)."""
    out: list[tuple[tuple, Candidates, int]] = []
    for mine, found in zip(shared, founds, strict=True):
        out += [(d, found, j) for j, d in enumerate(mine)]
    return out


def _confirmed(
    shared: list[list[tuple]],
    founds: list[Candidates],
    tokens: np.ndarray,
    search: Search,
) -> frozenset[str]:
    """The models confirmed on more test pairs: the best validation scores."""
    return confirmed_models(
        [(d[0].name, found.score[j], trivial(found.chosen[j][0], d[3], tokens))
         for d, found, j in _by_model(shared, founds)],
        search.confirm_models,
    )  # fmt: skip


def _confirm_cost(confirmed: frozenset[str]) -> Callable[[tuple[tuple, Candidates, int]], float]:
    """A confirmation's cost, for the order of taking: its test pairs, more for the
    confirmed models."""
    return lambda row: 3.0 if row[0][0].name in confirmed else 1.0


def _device(model: BracketTransformer) -> str:
    return next(model.parameters()).device.type


def _core(causal: CausalModel, variable: Variable) -> frozenset[str]:
    """The model's other intervened variables, shortcut add-ons aside: models of one core
    draw the variable's pairs from much the same bases."""
    return frozenset(v.name for v in causal.intervened
                     if v.name != variable.name and v.name not in SHORTCUTS)  # fmt: skip


def _shared(variable: Variable, column: np.ndarray) -> tuple[object, ...]:
    """What makes two models' variables one: the same name, the same value on every
    string, the same position and pairing (the course's ``negative`` and the grammar's
    ``suffix_positive`` stay two: their models' pairs differ enough that one shared
    choice of patch served one of them badly on the course checkpoint)."""
    digest = hashlib.sha1(column.astype(np.int64).tobytes()).hexdigest()
    return (variable.name, digest, variable.position, variable.same_first_token)
