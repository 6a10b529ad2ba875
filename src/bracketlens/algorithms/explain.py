"""Algorithm discovery: which causal model a checkpoint runs, and where each variable lives.

For every variable of every causal model:

1. draw base/source pairs (:mod:`.pairs`), split by base string into train,
   validation and test;
2. *screen* every location with whole-vector patches on a small share of the
   validation pairs (one batched pass per hook, :func:`.align.screen`);
3. at the best few locations, fit rotations of dimension 1 to 4 on the train
   pairs (distributed alignment search, :func:`.align.fit_basis`);
4. choose the location and dimension on all validation pairs and report the
   interchange intervention accuracy (IIA) on the test pairs, beside a control
   (a patch as strong, elsewhere), the null flip rate and the other guards
   (:mod:`.guards`; the verdict: :mod:`.conclude`).

A variable shared by several causal models (the grammar's atoms, ``elevation``...)
is screened and fitted once, on the pairs of every model that has it (each pair with
its own model's counterfactual label); each model then chooses among the fitted
patches on its own validation pairs and tests its choice on its own test pairs.

With no models named, explain tests the registered models and the models the
grammar generates (:mod:`.generate`).
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from bracketlens.algorithms.align import fit_basis, outcome, screen
from bracketlens.algorithms.causal import MODELS, CausalModel, Variable
from bracketlens.algorithms.conclude import conclude, confirmed_models
from bracketlens.algorithms.generate import default_models, found_by_generator
from bracketlens.algorithms.grammar import CANDIDATE_ATOMS, true_labels
from bracketlens.algorithms.guards import (
    DECISION,
    IIA,
    TELLING_DECISION,
    variable_guards,
)
from bracketlens.algorithms.locations import (
    Location,
    Site,
    pair_activations,
    position_sets,
    sites,
)
from bracketlens.algorithms.pairs import (
    KINDS,
    PairCounts,
    Pairs,
    concat,
    sample_pairs,
    string_splits,
)
from bracketlens.algorithms.result import (
    Alignment,
    Explanation,
    ScreenMap,
    by_kind,
    kind_mean,
    pooled_estimate,
)
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.interventions.interchange import random_basis
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer


@dataclass(frozen=True)
class Search:
    """How hard to look: pair counts, screening sample, DAS settings, which hooks."""

    counts: PairCounts = field(default_factory=PairCounts)
    screen_per_cell: int = 16  # validation pairs per (group, kind) used to screen
    das_top: int = 2  # locations that get rotations, per group of models (see _search)
    das_dims: tuple[int, ...] = (1, 4)
    das_steps: int = 30
    sites: Callable[[Site], bool] | None = None  # None: every hook
    positions: Callable[[tuple[int, ...]], bool] | None = None  # None: every position (set)
    whole_vector: bool = True  # False: only rotations compete (dim >= 1)
    # with no models named, the grammar's models beside the registered ones: "all" (shortcut
    # add-ons and per-position models too), "cores" (the exact rules alone) or "none"
    generated: str = "all"
    # the models of the best validation scores are confirmed on more test pairs per
    # (group, kind): their guards' bounds are tight enough to pass a model whose IIA is
    # 0.94, where 96 pairs need 0.97
    confirm_models: int = 4
    confirm_test: int = 288
    # screen a shared variable's models in groups of one core, each group's best locations
    # getting rotations (see _search): a wider search, and a slower one
    group_screens: bool = False

    @classmethod
    def quick(cls) -> Search:
        """A lighter search for the report: fewer pairs, one rotation at the best location,
        and the registered models only (``bracketlens explain`` also tests the grammar's).

        Its rotation gets 10 Adam steps of up to 96 pairs: seven to ten passes over the
        64 to 128 training pairs a variable has on the bundled model.
        """
        return cls(PairCounts(train=32, validation=24, test=48), screen_per_cell=8, das_top=1,
                   das_dims=(1,), das_steps=10, generated="none", confirm_models=0)  # fmt: skip

    @classmethod
    def smoke(cls) -> Search:
        """The least search that still fills every field: for the tiny sweep recipe and tests.

        About a tenth of the default's time; its IIA rests on a few dozen pairs.
        """
        return cls(PairCounts(train=16, validation=16, test=24), screen_per_cell=4, das_top=1,
                   das_dims=(1,), das_steps=5, generated="cores", confirm_models=0)  # fmt: skip

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
        """``"default"``, ``"quick"`` or ``"smoke"``."""
        presets: dict[str, Callable[[], Search]] = {
            "default": cls,
            "quick": cls.quick,
            "smoke": cls.smoke,
        }
        if name not in presets:
            raise BracketLensError(f"unknown search {name!r}; use one of {', '.join(presets)}")
        return presets[name]()


_Fit = tuple[Location, int, "Tensor | None"]  # (location, dim, basis; None: whole vector)


@dataclass(frozen=True)
class _Candidates:
    screen: ScreenMap
    fits: tuple[_Fit, ...]
    chosen: tuple[_Fit, ...]  # per model that has the variable: its best fit on its validation
    validation_iia: tuple[float, ...]  # per model: that fit's kind-mean IIA on its validation
    score: tuple[float, ...]  # per model: that fit's worst margin on its validation


def explain(
    model: BracketTransformer,
    data: BracketDataset,
    seed: int = 0,
    *,
    models: Sequence[str | CausalModel] | None = None,
    search: Search | None = None,
) -> Explanation:
    """Align every registered causal model with ``model`` on ``data`` and give the verdict.

    Args:
        models: causal models (or names in :data:`~.causal.MODELS`); default: all registered.
        search: how many pairs, locations and rotations to try (defaults fit the CLI's
            10,000 strings in well under two minutes on two cores).
        seed: seeds pair sampling, splits, rotations and controls.
    """
    search = search or Search()
    chosen = _resolve(models, search)
    _check(data)
    tokens = data.tokens.numpy()
    groups = data.failure_groups.numpy()
    split_of = string_splits(len(data), np.random.default_rng([seed, 1]))
    alignments: list[Alignment] = []
    context = _Context(model, data, seed, _label_pairs(data, split_of, search, seed))
    drawn = []  # (model, variable, its pairs, its values, shared key)
    # test pairs enough for the confirmed models; the others are tested on a thinned share
    counts = replace(search.counts, test=max(search.counts.test, search.confirm_test))
    for causal in chosen:
        values = causal.values(tokens)
        for variable in causal.intervened:
            rng = np.random.default_rng(
                [seed, zlib.crc32(f"{causal.name}/{variable.name}".encode())]
            )
            pairs = sample_pairs(causal, variable, values, tokens, groups, split_of, counts, rng)
            if all((pairs.split == s).any() for s in range(3)):  # else: none informative
                column = np.asarray(values[variable.name])
                drawn.append((causal, variable, pairs, column, _shared(variable, column)))
    # a variable shared by several models (the grammar's atoms) is screened and fitted
    # once, on the pairs of all of them (each pair with its own model's label); each
    # model chooses among the fits on its own validation pairs. Two variables are one
    # where they take the same value on every string
    screens: list[ScreenMap] = []
    searched: list[tuple[tuple, _Candidates, int]] = []
    for key in dict.fromkeys(d[-1] for d in drawn):
        mine = [d for d in drawn if d[-1] == key]
        cores = [_core(d[0], d[1]) if search.group_screens else frozenset() for d in mine]
        found = _search(model, data, mine[0][0], mine[0][1], [d[2] for d in mine], cores,
                        search, seed)  # fmt: skip
        screens.append(found.screen)
        searched += [(d, found, j) for j, d in enumerate(mine)]
    confirmed = confirmed_models(
        [(d[0].name, found.score[j], _trivial(found.chosen[j][0], d[3], tokens))
         for d, found, j in searched],
        search.confirm_models,
    )  # fmt: skip
    for (causal, variable, pairs, column, _), found, j in searched:
        test = pairs.in_split("test")
        if causal.name not in confirmed:
            test = test.thin(search.counts.test, seed)
        alignments.append(_choose_and_test(context, causal, variable, test, found, j, column))
    by_generator = frozenset(
        m.name
        for m in chosen
        if models is None
        and search.generated != "none"
        and not m.generated
        and found_by_generator(m)
    )
    return conclude(chosen, alignments, screens, groups, search, seed, len(data), by_generator)


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
) -> _Candidates:
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
        found = _screen_map(model, data, causal.name, variable, val, search)
        screen_map = screen_map or found  # the first model's group is the one reported
        # a per-position variable has one position per hook: its best hook gets rotations
        n_top = 1 if variable.position is not None else search.das_top
        ranked.append(_top_locations(found, n_top, model.cfg.n_layers))
    assert screen_map is not None
    locations = _merge(ranked, model.cfg.n_layers)
    fits: list[_Fit] = []
    if search.whole_vector or not search.das_dims:
        fits += [(loc, 0, None) for loc in locations]
    train = pairs.in_split("train")
    acts = pair_activations(model, data.tokens, train.base, train.source,
                            [loc.site for loc in locations])  # fmt: skip
    for j, loc in enumerate(locations):
        for dim in search.das_dims:
            if dim < loc.site.width(model.cfg):
                basis = fit_basis(model, acts, train.label, loc, dim, steps=search.das_steps,
                                  seed=seed + 1000 * j + dim)  # fmt: skip
                fits.append((loc, dim, basis))
    # every model's validation pairs through one pass per fit, then scored model by model
    vals = [m.in_split("validation") for m in members]
    full = concat(vals)
    acts = pair_activations(model, data.tokens, full.base, full.source,
                            [loc.site for loc, _, _ in fits])  # fmt: skip
    correct = [outcome(model, acts, loc, basis).predicted == full.label
               for loc, _, basis in fits]  # fmt: skip
    ends = np.cumsum([len(v) for v in vals])
    chosen, iias, scores = [], [], []
    for val_m, end in zip(vals, ends, strict=True):
        rows = slice(end - len(val_m), end)
        mine = [_choice_score(c[rows], val_m) for c in correct]
        best = int(np.nanargmax(mine)) if not np.isnan(mine).all() else 0
        chosen.append(fits[best])
        iias.append(kind_mean(correct[best][rows], val_m.kind))
        scores.append(float(mine[best]))
    return _Candidates(screen_map, tuple(fits), tuple(chosen), tuple(iias), tuple(scores))


def _top_locations(screen_map: ScreenMap, n_top: int, n_layers: int) -> list[Location]:
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
        if (_same_patch(site, n_layers), positions) not in seen:
            seen.add((_same_patch(site, n_layers), positions))
            out.append(Location(site, positions))
    if not out:  # nothing screened (no validation pairs): the first location stands in
        out.append(Location(site_list[order[0] // len(sets)], sets[order[0] % len(sets)]))
    return out


def _merge(ranked: list[list[Location]], n_layers: int) -> list[Location]:
    """Each group's locations in turn (every group's best first), one of each patch, at most
    the first group's number plus one per other group."""
    cap = len(ranked[0]) + len(ranked) - 1
    out: list[Location] = []
    seen: set[tuple[Site, tuple[int, ...]]] = set()
    for rank in range(max(len(r) for r in ranked)):
        for locations in ranked:
            if rank < len(locations) and len(out) < cap:
                loc = locations[rank]
                if (_same_patch(loc.site, n_layers), loc.positions) not in seen:
                    seen.add((_same_patch(loc.site, n_layers), loc.positions))
                    out.append(loc)
    return out


def _core(causal: CausalModel, variable: Variable) -> frozenset[str]:
    """The model's other intervened variables, shortcut add-ons aside: models of one core
    draw the variable's pairs from much the same bases."""
    return frozenset(v.name for v in causal.intervened
                     if v.name != variable.name and v.name not in SHORTCUTS)  # fmt: skip


def _choice_score(correct: np.ndarray, pairs: Pairs) -> float:
    """The worst of the IIA guards' margins on validation pairs: each pair kind's IIA less
    its bar, and the telling pairs' IIA less theirs (the bar of a location that carries
    the decision, which a patch carrying only the decision misses on every telling pair);
    their mean breaks ties.

    The guards on the test pairs fail a model on its worst kind, not on its mean.
    """
    cells = [float(correct[pairs.kind == k].mean()) - IIA for k in range(len(KINDS))
             if (pairs.kind == k).any()]  # fmt: skip
    if pairs.telling.any():
        cells.append(float(correct[pairs.telling].mean()) - TELLING_DECISION)
    if not cells:
        return float("nan")
    return min(cells) + 1e-3 * float(np.mean(cells))


def _shared(variable: Variable, column: np.ndarray) -> tuple[object, ...]:
    """What makes two models' variables one: the same name, the same value on every
    string, the same position and pairing (the course's ``negative`` and the grammar's
    ``suffix_positive`` stay two: their models' pairs differ enough that one shared
    choice of patch served one of them badly on the course checkpoint)."""
    digest = hashlib.sha1(column.astype(np.int64).tobytes()).hexdigest()
    return (variable.name, digest, variable.position, variable.same_first_token)


def _screen_map(
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
    runs = [_same_patch(s, model.cfg.n_layers) for s in site_list]
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


def _same_patch(site: Site, n_layers: int) -> Site:
    """The site whose patch is this one's, run from as late a layer as possible: block
    ``L``'s output is block ``L + 1``'s input, so patching ``resid_post L`` is patching
    ``resid_pre L+1`` (and starts a layer later)."""
    if site.hook.endswith("hook_resid_post") and site.layer + 1 < n_layers:
        return Site(act_name("resid_pre", site.layer + 1), None, site.layer + 1)
    return site


@dataclass
class _Context:
    """What every alignment's test shares: the model, its strings, and the label-only
    model's test pairs with its IIA at each location tried (computed once per patch)."""

    model: BracketTransformer
    data: BracketDataset
    seed: int
    label_pairs: Pairs
    label_iia: dict[tuple[Location, int], float] = field(default_factory=dict)


#: the decision alone: a location where this aligns carries the label, whatever it is
LABEL_ONLY = CausalModel(
    "label_only", (Variable("label", true_labels),), lambda v: np.asarray(v["label"], bool),
    "the label itself", rule_text="label",
)  # fmt: skip


def _label_pairs(data: BracketDataset, split_of: np.ndarray, search: Search, seed: int) -> Pairs:
    tokens = data.tokens.numpy()
    values = LABEL_ONLY.values(tokens)
    pairs = sample_pairs(LABEL_ONLY, LABEL_ONLY.variables[0], values, tokens,
                         data.failure_groups.numpy(), split_of, search.counts,
                         np.random.default_rng([seed, 7]))  # fmt: skip
    # 16 pairs per (group, kind): the label-only model aligns at 1.0 where it does at all
    return pairs.in_split("test").thin(16, seed)


def _label_iia_here(ctx: _Context, location: Location, basis: Tensor | None) -> float | None:
    """The label-only model's IIA with this patch (its test pairs), once per patch."""
    pairs = ctx.label_pairs
    if not len(pairs):
        return None
    key = (location, id(basis))
    if key not in ctx.label_iia:
        acts = pair_activations(ctx.model, ctx.data.tokens, pairs.base, pairs.source,
                                [location.site])  # fmt: skip
        correct = outcome(ctx.model, acts, location, basis).predicted == pairs.label
        ctx.label_iia[key] = kind_mean(correct, pairs.kind)
    return ctx.label_iia[key]


def _control(
    location: Location, dim: int, width: int, seed: int
) -> tuple[Location, Tensor | None, str]:
    """A patch as strong as the one tested, where the variable should not be."""
    gen = torch.Generator().manual_seed(seed)
    if dim > 0:
        return location, random_basis(width, dim, gen), "random subspace of the same dimension"
    p = location.positions
    if len(p) <= 2:  # the whole vector, at as many positions just after these
        shifted = tuple(q + len(p) for q in p)
        return Location(location.site, shifted), None, "same hook and width, positions shifted"
    return location, random_basis(width, width // 2, gen), "random half-width subspace"


def _trivial(location: Location, column: np.ndarray, tokens: np.ndarray) -> bool:
    """The variable is a function of the input tokens at the patched positions, and the
    patch is at the input itself (the token embedding)."""
    if location.site.hook != act_name("resid_pre", 0):
        return False
    at = tokens[:, [p for p in location.positions if p < tokens.shape[1]]]
    _, inverse = np.unique(at, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    pairs = np.unique(np.stack([inverse, np.asarray(column, np.int64)], 1), axis=0)
    return len(pairs) == len(np.unique(inverse))


def _choose_and_test(
    ctx: _Context,
    causal: CausalModel,
    variable: Variable,
    test: Pairs,
    found: _Candidates,
    member: int,
    column: np.ndarray,
) -> Alignment:
    """Score the patch this model chose (``found.chosen[member]``), its control and its
    flips on this model's ``test`` pairs."""
    model, data, seed = ctx.model, ctx.data, ctx.seed
    location, dim, basis = found.chosen[member]
    acts = pair_activations(model, data.tokens, test.base, test.source, [location.site])
    result = outcome(model, acts, location, basis)
    correct = result.predicted == test.label
    where, control, control_kind = _control(location, dim, location.site.width(model.cfg), seed)
    control_correct = outcome(model, acts, where, control).predicted == test.label
    unchanged = test.kind == KINDS.index("unchanged")
    telling = test.telling
    iia = pooled_estimate([(correct, test.kind)], seed)
    label_here = _label_iia_here(ctx, location, basis)
    decision = label_here is not None and label_here >= DECISION
    return Alignment(
        model=causal.name,
        variable=variable.name,
        location=location,
        dim=dim,
        basis=basis,
        iia=iia,
        iia_by_kind=by_kind(correct, test.kind),
        control_iia=kind_mean(control_correct, test.kind),
        control_by_kind=by_kind(control_correct, test.kind),
        null_flip_rate=float(result.flipped[unchanged].mean()) if unchanged.any() else None,
        coverage=_coverage(correct, test),
        validation_iia=found.validation_iia[member],
        n_pairs={k: int((test.kind == i).sum()) for i, k in enumerate(KINDS)},
        correct=correct,
        kind=test.kind,
        telling=telling,
        group=test.group,
        control_correct=control_correct,
        flipped=result.flipped,
        control_kind=control_kind,
        trivial=_trivial(location, column, data.tokens.numpy()),
        label_iia_here=label_here,
        decision_carrying=decision,
        guards=variable_guards(
            iia, correct, test.kind, telling, control_correct, result.flipped, decision
        ),
    )


def _coverage(correct: np.ndarray, pairs: Pairs) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for group in FailureGroup:
        rows = pairs.group == group
        out[group.label] = kind_mean(correct[rows], pairs.kind[rows]) if rows.any() else None
    return out
