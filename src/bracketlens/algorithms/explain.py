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
   (the same patch in a random subspace) and the null flip rate.

A variable shared by several causal models (``elevation``...) is screened and
fitted once; each model then chooses and tests on its own pairs.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from bracketlens.algorithms.align import fit_basis, outcome, screen
from bracketlens.algorithms.causal import MODELS, CausalModel, Variable
from bracketlens.algorithms.locations import (
    Location,
    Site,
    pair_activations,
    position_sets,
    sites,
)
from bracketlens.algorithms.pairs import KINDS, PairCounts, Pairs, sample_pairs, string_splits
from bracketlens.algorithms.result import (
    THRESHOLD,
    Alignment,
    Explanation,
    ModelScore,
    ScreenMap,
    by_kind,
    kind_mean,
    pooled_estimate,
    split_inputs,
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
    das_top: int = 2  # locations that get rotations
    das_dims: tuple[int, ...] = (1, 4)
    das_steps: int = 30
    sites: Callable[[Site], bool] | None = None  # None: every hook
    positions: Callable[[tuple[int, ...]], bool] | None = None  # None: every position (set)
    whole_vector: bool = True  # False: only rotations compete (dim >= 1)

    @classmethod
    def quick(cls) -> Search:
        """A lighter search (fewer pairs, one rotation at the best location): for the report.

        Its rotation gets 10 Adam steps of up to 96 pairs: seven to ten passes over the
        64 to 128 training pairs a variable has on the bundled model. On the bundled and
        the course model (three seeds each), 20 steps give the same whole-vector winners
        for most variables and mean IIAs within 0.025, at 10-35% more time.
        """
        return cls(PairCounts(train=32, validation=24, test=48), screen_per_cell=8, das_top=1,
                   das_dims=(1,), das_steps=10)  # fmt: skip

    @classmethod
    def smoke(cls) -> Search:
        """The least search that still fills every field: for the tiny sweep recipe and tests.

        About a tenth of the default's time; its IIA rests on a few dozen pairs.
        """
        return cls(PairCounts(train=16, validation=16, test=24), screen_per_cell=4, das_top=1,
                   das_dims=(1,), das_steps=5)  # fmt: skip

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


@dataclass(frozen=True)
class _Candidates:
    screen: ScreenMap
    fits: tuple[tuple[Location, int, Tensor | None], ...]  # (location, dim, basis)


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
    chosen = _resolve(models)
    _check(data)
    tokens = data.tokens.numpy()
    groups = data.failure_groups.numpy()
    split_of = string_splits(len(data), np.random.default_rng([seed, 1]))
    cache: dict[int, _Candidates] = {}
    alignments: list[Alignment] = []
    screens: list[ScreenMap] = []
    for causal in chosen:
        values = causal.values(tokens)
        for variable in causal.intervened:
            rng = np.random.default_rng(
                [seed, zlib.crc32(f"{causal.name}/{variable.name}".encode())]
            )
            pairs = sample_pairs(
                causal, variable, values, tokens, groups, split_of, search.counts, rng
            )
            if not all((pairs.split == s).any() for s in range(3)):
                continue  # no informative pairs in this sample
            if id(variable) not in cache:
                cache[id(variable)] = _search(model, data, causal, variable, pairs, search, seed)
                screens.append(cache[id(variable)].screen)
            alignments.append(_choose_and_test(model, data, causal, variable, pairs,
                                               cache[id(variable)], seed))  # fmt: skip
    scores = tuple(s for c in chosen if (s := _score(c, alignments, seed)) is not None)
    passing = [s for s in scores if s.iia.value >= THRESHOLD]
    best = max(passing, key=lambda s: s.iia.value).name if passing else "none"
    return Explanation(best, scores, tuple(alignments), split_inputs(scores, groups),
                       tuple(screens), seed, len(data))  # fmt: skip


def _resolve(models: Sequence[str | CausalModel] | None) -> list[CausalModel]:
    if models is None:
        return list(MODELS.values())
    out = []
    for m in models:
        if isinstance(m, CausalModel):
            out.append(m)
        elif m in MODELS:
            out.append(MODELS[m])
        else:
            raise BracketLensError(f"unknown causal model {m!r}; use one of {', '.join(MODELS)}")
    return out


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
    pairs: Pairs,
    search: Search,
    seed: int,
) -> _Candidates:
    """Screen every location on a few validation pairs; fit rotations at the best ones."""
    val = pairs.in_split("validation").thin(search.screen_per_cell, seed)
    screen_map = _screen_map(model, data, causal.name, variable, val, search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # locations not screened are all NaN
        headline = np.nanmean(screen_map.iia, axis=2)
    # a per-position variable has one position per hook: its best hook gets the rotations
    n_top = 1 if variable.position is not None else search.das_top
    top = np.argsort(-np.nan_to_num(headline, nan=-1), axis=None, kind="stable")[:n_top]
    sets, site_list = screen_map.positions, screen_map.site_objects
    locations = [Location(site_list[i // len(sets)], sets[i % len(sets)]) for i in top]
    fits: list[tuple[Location, int, Tensor | None]] = []
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
    return _Candidates(screen_map, tuple(fits))


def _screen_map(
    model: BracketTransformer,
    data: BracketDataset,
    causal: str,
    variable: Variable,
    val: Pairs,
    search: Search,
) -> ScreenMap:
    """Whole-vector IIA by kind at every (hook, position set) that ``search`` allows."""
    site_list = [s for s in sites(model.cfg) if search.sites is None or search.sites(s)]
    runs = [_same_patch(s, model.cfg.n_layers) for s in site_list]
    acts = pair_activations(model, data.tokens, val.base, val.source, runs)
    sets = position_sets(acts.base_tokens.shape[1], variable.position)
    sets = [p for p in sets if search.positions is None or search.positions(p)]
    iia = np.full((len(site_list), len(sets), len(KINDS)), np.nan)
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
    return ScreenMap(causal, variable.name, tuple(s.label for s in site_list),
                     tuple(s.layer for s in site_list), tuple(sets), iia, tuple(site_list))  # fmt: skip


def _same_patch(site: Site, n_layers: int) -> Site:
    """The site whose patch is this one's, run from as late a layer as possible: block
    ``L``'s output is block ``L + 1``'s input, so patching ``resid_post L`` is patching
    ``resid_pre L+1`` (and starts a layer later)."""
    if site.hook.endswith("hook_resid_post") and site.layer + 1 < n_layers:
        return Site(act_name("resid_pre", site.layer + 1), None, site.layer + 1)
    return site


def _choose_and_test(
    model: BracketTransformer,
    data: BracketDataset,
    causal: CausalModel,
    variable: Variable,
    pairs: Pairs,
    found: _Candidates,
    seed: int,
) -> Alignment:
    """Pick the candidate with the best validation IIA; score it, its control and flips on test."""
    sites = [loc.site for loc, _, _ in found.fits]
    val, test = pairs.in_split("validation"), pairs.in_split("test")
    acts = pair_activations(model, data.tokens, val.base, val.source, sites)
    scores = [
        kind_mean(outcome(model, acts, loc, basis).predicted == val.label, val.kind)
        for loc, _, basis in found.fits
    ]
    location, dim, basis = found.fits[int(np.nanargmax(scores))]
    acts = pair_activations(model, data.tokens, test.base, test.source, sites)
    result = outcome(model, acts, location, basis)
    correct = result.predicted == test.label
    gen = torch.Generator().manual_seed(seed)
    control = random_basis(location.site.width(model.cfg), max(dim, 1), gen)
    control_correct = outcome(model, acts, location, control).predicted == test.label
    unchanged = test.kind == KINDS.index("unchanged")
    return Alignment(
        model=causal.name,
        variable=variable.name,
        location=location,
        dim=dim,
        basis=basis,
        iia=pooled_estimate([(correct, test.kind)], seed),
        iia_by_kind=by_kind(correct, test.kind),
        control_iia=kind_mean(control_correct, test.kind),
        control_by_kind=by_kind(control_correct, test.kind),
        null_flip_rate=float(result.flipped[unchanged].mean()) if unchanged.any() else None,
        coverage=_coverage(correct, test),
        validation_iia=float(np.nanmax(scores)),
        n_pairs={k: int((test.kind == i).sum()) for i, k in enumerate(KINDS)},
        correct=correct,
        kind=test.kind,
    )


def _coverage(correct: np.ndarray, pairs: Pairs) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for group in FailureGroup:
        rows = pairs.group == group
        out[group.label] = kind_mean(correct[rows], pairs.kind[rows]) if rows.any() else None
    return out


def _score(causal: CausalModel, alignments: list[Alignment], seed: int) -> ModelScore | None:
    """Mean over the model's variables of their best IIA; coverage by base failure group."""
    mine = [a for a in alignments if a.model == causal.name]
    if not mine:
        return None
    coverage: dict[str, float | None] = {}
    for group in FailureGroup:
        seen = [a.coverage[group.label] for a in mine if a.coverage[group.label] is not None]
        coverage[group.label] = float(np.mean(seen)) if seen else None  # type: ignore[arg-type]
    iia = pooled_estimate([(a.correct, a.kind) for a in mine], seed)
    return ModelScore(
        causal.name, causal.description, iia, coverage, tuple(a.variable for a in mine)
    )
