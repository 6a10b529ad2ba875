"""Resampling tests of the hypotheses, in the spirit of causal scrubbing.

A hypothesis says an activation depends on the input only through a feature
(e.g. the elevation head's value vector at the read position only through the
open proportion and the first character). If so, replacing it by its value on
another string that agrees on the feature leaves the loss unchanged, while a
donor chosen at random destroys the feature. The share of loss recovered is

    (L_random - L_hypothesis) / (L_random - L_model),

unclipped: 1 means the feature explains everything the activation carries,
0 means it explains nothing, and a control that resamples on a shuffled feature
should score near 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from bracketlens.activations import ActSlice, get_slices
from bracketlens.circuits.elevation import Roles
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup, group_rows
from bracketlens.errors import BracketLensError
from bracketlens.interventions import Hook, Start, run_patched, set_at, start_after
from bracketlens.interventions.ablate import CleanRun, group_means
from bracketlens.model.layers import Attention
from bracketlens.model.names import act_name
from bracketlens.model.predict import predict_logits
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, bootstrap_ratio


@dataclass(frozen=True)
class ScrubResult:
    """Loss recovered by one hypothesis, overall and per failure group."""

    hypothesis: str
    activation: str
    loss_model: dict[str, float]
    loss_hypothesis: dict[str, float]
    loss_random: dict[str, float]
    loss_control: dict[str, float]
    # per-string losses ("model", "hypothesis", "random", "control") and failure groups,
    # for bootstrap intervals; None when only the means are known
    per_string: dict[str, np.ndarray] | None = None
    groups: np.ndarray | None = None
    headline: str = "all"  # the failure group the hypothesis is about
    # the intervals drawn so far: the page's text, findings.json and the page's embedded
    # copy of it all ask for the same ones, and each is 2,000 seeded resamples
    _intervals: dict[tuple[str, str], Estimate] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def recovered_interval(self, group: str = "all", which: str = "hypothesis") -> Estimate:
        """The share recovered in ``group`` with a bootstrap interval over its strings."""
        if self.per_string is None or self.groups is None:
            raise BracketLensError("this result kept no per-string losses to resample")
        if (group, which) not in self._intervals:
            rows = group_rows(self.groups, group)
            random = self.per_string["random"][rows].astype(np.float64)
            # (L_random - L_x) / (L_random - L_model) is a ratio of means of per-string gaps
            self._intervals[group, which] = bootstrap_ratio(
                random - self.per_string[which][rows], random - self.per_string["model"][rows]
            )
        return self._intervals[group, which]

    def to_json(self) -> dict[str, object]:
        """Shares of loss recovered (with intervals when per-string losses were kept)."""
        recovered = self.recovered()
        return {
            "hypothesis": self.hypothesis,
            "activation": self.activation,
            "headline_group": self.headline,
            "loss_recovered": {k: round(v, 6) for k, v in recovered.items()},
            "loss_recovered_ci95": None
            if self.per_string is None
            else {k: self.recovered_interval(k).to_dict() for k in recovered},
            "control_loss_recovered": {
                k: round(v, 6) for k, v in self.recovered("control").items()
            },
            "loss_model": {k: round(v, 8) for k, v in self.loss_model.items()},
            "loss_hypothesis": {k: round(v, 8) for k, v in self.loss_hypothesis.items()},
            "loss_random": {k: round(v, 8) for k, v in self.loss_random.items()},
        }

    def recovered(self, which: str = "hypothesis") -> dict[str, float]:
        """(L_random - L_x) / (L_random - L_model) per group, for x = hypothesis or control."""
        loss = self.loss_hypothesis if which == "hypothesis" else self.loss_control
        out = {}
        for group, l_rand in self.loss_random.items():
            gap = l_rand - self.loss_model[group]
            out[group] = float((l_rand - loss[group]) / gap) if abs(gap) > 1e-9 else float("nan")
        return out


def matched_donors(keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row, another row with the same key (itself only when it is alone)."""
    donors = np.arange(len(keys))
    _, inverse = np.unique(keys, return_inverse=True, axis=0)
    for group in np.unique(inverse):
        members = np.flatnonzero(inverse == group)
        if len(members) > 1:
            # a derangement by rotation of a shuffled order: nobody donates to itself
            order = rng.permutation(members)
            donors[order] = np.roll(order, 1)
    return donors


def _string_losses(logits: Tensor, data: BracketDataset) -> Tensor:
    return F.cross_entropy(logits, data.labels.long(), reduction="none")


@dataclass(frozen=True)
class Site:
    """One activation a hypothesis is about, and the feature it should carry."""

    hook_name: str  # e.g. "blocks.2.attn.hook_v"
    head: int
    position: int
    feature: np.ndarray  # [batch, k]: strings with equal rows are interchangeable


@dataclass(frozen=True)
class CleanActivations:
    """What every resampling test on one data set reads from the clean run, computed once.

    ``acts`` holds each site's value and what each test's patched runs start from
    (:func:`_start_slices`); ``losses`` the clean per-string loss.
    """

    acts: dict[ActSlice, Tensor]
    losses: Tensor


def _layer(site: Site) -> int:
    return int(site.hook_name.split(".")[1])  # every site is in a block


def _first_sites(sites: list[Site]) -> tuple[int, list[int], bool]:
    """The first block any site is in, the indices of the sites there, and whether the
    patched runs can start at that block's MLP half: when each of those sites is a
    head's value or output, at distinct heads, the block's attention output moves by
    a known amount (see :func:`_start_slices`)."""
    first = min(_layer(s) for s in sites)
    here = [i for i, s in enumerate(sites) if _layer(s) == first]
    kinds = all(sites[i].hook_name.endswith(("attn.hook_v", "attn.hook_result")) for i in here)
    return first, here, kinds and len({sites[i].head for i in here}) == len(here)


def _start_slices(sites: list[Site]) -> list[ActSlice]:
    """What a test's patched runs start from: the first site's block's ``hook_resid_mid``
    and, for each value site there, the attention every query pays its position (a
    value patch leaves queries and keys alone); else that block's ``hook_resid_pre``."""
    first, here, mid = _first_sites(sites)
    if not mid:
        return [ActSlice(act_name("resid_pre", first))]
    pattern = act_name("pattern", first)
    values = [sites[i] for i in here if sites[i].hook_name.endswith("hook_v")]
    return [
        ActSlice(start_after(sites[here[0]].hook_name).hook),
        *[ActSlice(pattern, s.position, s.head) for s in values],
    ]


def _slices_read(tests: list[list[Site]]) -> list[ActSlice]:
    """Each site's value and what each test's patched runs start from."""
    parts = [ActSlice(s.hook_name, s.position, s.head) for sites in tests for s in sites]
    return list(dict.fromkeys([*parts, *(p for sites in tests for p in _start_slices(sites))]))


def clean_activations(
    model: BracketTransformer,
    data: BracketDataset,
    tests: list[list[Site]],
    clean: CleanRun | None = None,
) -> CleanActivations:
    """What ``tests`` (each a list of sites) read from the clean run of ``data``.

    Taken from ``clean`` (a :func:`~bracketlens.interventions.ablate.clean_run` of the same
    strings that kept :func:`scrub_slices`) when given, else from one pass.
    """
    parts = _slices_read(tests)
    if clean is not None and all(part in clean.acts for part in parts):
        return CleanActivations(clean.acts, _string_losses(clean.logits, data))
    acts = get_slices(model, data.tokens, parts)
    return CleanActivations(acts, _string_losses(predict_logits(model, data.tokens), data))


def resample_test(
    model: BracketTransformer,
    data: BracketDataset,
    sites: list[Site],
    hypothesis: str,
    seed: int = 0,
    clean: CleanActivations | None = None,
) -> ScrubResult:
    """Resample every site at once from donors that share its feature (or at random).

    ``clean`` (from :func:`clean_activations` over the same ``data``) lets several
    tests share one clean pass; without it the test makes its own.
    """
    rng = np.random.default_rng(seed)
    first, here, mid = _first_sites(sites)
    clean = clean or clean_activations(model, data, [sites])
    resid, *attention = (clean.acts[part] for part in _start_slices(sites))
    attn = cast(Attention, model.blocks[first].attn)
    # each site's clean value, [batch, d]: a donor's copy is one row of it
    values = [clean.acts[ActSlice(s.hook_name, s.position, s.head)] for s in sites]
    hooked = [i for i in range(len(sites)) if not (mid and i in here)]

    def run(donors: list[np.ndarray]) -> Tensor:
        sources = [v[torch.from_numpy(d)] for v, d in zip(values, donors, strict=True)]

        def hooks(rows: Tensor) -> list[tuple[str, Hook]]:
            return [
                (sites[i].hook_name, set_at(sources[i][rows], sites[i].position, sites[i].head))
                for i in hooked
            ]

        def patched_mid(rows: Tensor, width: int) -> Tensor:
            """The first block's resid_mid with the patches of the sites there."""
            out = resid[rows, :width].clone()  # [:, :1] after a class_only last block
            columns = iter(attention)
            for i in here:
                site, change = sites[i], sources[i][rows] - values[i][rows]
                if site.hook_name.endswith("hook_v"):
                    column = next(columns)[rows, : out.shape[1]]
                    if site.position < width:  # else padding in every string here
                        out += attn.value_change(site.head, column, change)
                elif site.position < out.shape[1]:
                    out[:, site.position] += change
            return out

        start = Start.after(sites[here[0]].hook_name, patched_mid) if mid else Start(first, resid)
        logits = run_patched(model, data.tokens, per_batch=hooks, start=start)
        return _string_losses(logits, data)

    n = len(data)
    losses = {
        "model": clean.losses,  # nothing resampled
        "hypothesis": run([matched_donors(s.feature, rng) for s in sites]),
        "random": run([rng.permutation(n) for _ in sites]),
        "control": run([matched_donors(s.feature[rng.permutation(n)], rng) for s in sites]),
    }
    return ScrubResult(
        hypothesis=hypothesis,
        activation="; ".join(f"{s.hook_name}[:, {s.position}, {s.head}]" for s in sites),
        loss_model=group_means(losses["model"], data),
        loss_hypothesis=group_means(losses["hypothesis"], data),
        loss_random=group_means(losses["random"], data),
        loss_control=group_means(losses["control"], data),
        per_string={k: v.numpy() for k, v in losses.items()},
        groups=data.failure_groups.numpy(),
    )


def elevation_feature(data: BracketDataset) -> np.ndarray:
    """(number of '(' minus ')', first character): what the elevation path should carry."""
    tokens: Int[Tensor, "b s"] = data.tokens
    elevation = ((tokens == 3).sum(-1) - (tokens == 4).sum(-1)).numpy()
    return np.stack([elevation, data.tokens[:, 1].numpy()], axis=1)


def elevation_site(data: BracketDataset, roles: Roles) -> Site:
    """The elevation head's value vector at the read position, and the elevation feature."""
    return Site(*_elevation_place(roles), elevation_feature(data))


def negative_site(data: BracketDataset, layer: int, head: int) -> Site:
    """The negative head's output at position 0, and (goes negative, elevation, first char)."""
    negative = data.failure_types.negative.numpy().astype(np.int64)
    feature = np.concatenate([negative[:, None], elevation_feature(data)], axis=1)
    return Site(*_negative_place(layer, head), feature)


def _elevation_place(roles: Roles) -> tuple[str, int, int]:
    """Hook, head and position of the elevation site."""
    return act_name("v", roles.elevation_layer), roles.elevation_head, roles.read_position


def _negative_place(layer: int, head: int) -> tuple[str, int, int]:
    """Hook, head and position of the negative site."""
    return act_name("result", layer), head, 0


def scrub_elevation(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles,
    seed: int = 0,
    clean: CleanActivations | None = None,
) -> ScrubResult:
    """The elevation head's value at the read position depends only on the elevation feature."""
    hypothesis = (
        f"head {roles.elevation_layer}.{roles.elevation_head}'s value at position "
        f"{roles.read_position} carries only the elevation and the first character"
    )
    result = resample_test(model, data, [elevation_site(data, roles)], hypothesis, seed, clean)
    return replace(result, headline=FailureGroup.ELEVATION_ONLY.label)


def scrub_negative(
    model: BracketTransformer,
    data: BracketDataset,
    layer: int,
    head: int,
    seed: int = 0,
    clean: CleanActivations | None = None,
) -> ScrubResult:
    """The negative head's output at position 0 depends only on whether a suffix goes negative."""
    hypothesis = (
        f"head {layer}.{head}'s output at position 0 carries only whether a suffix goes "
        "negative (with the elevation and first character)"
    )
    site = negative_site(data, layer, head)
    result = resample_test(model, data, [site], hypothesis, seed, clean)
    return replace(result, headline=FailureGroup.NEGATIVE_ONLY.label)


def scrub_both(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles,
    negative_head: tuple[int, int],
    seed: int = 0,
    clean: CleanActivations | None = None,
) -> ScrubResult:
    """Both hypotheses at once: everything the two final heads carry is the two features."""
    sites = [elevation_site(data, roles), negative_site(data, *negative_head)]
    hypothesis = "the elevation and negative hypotheses together"
    return resample_test(model, data, sites, hypothesis, seed, clean)


def _tests(
    data: BracketDataset, roles: Roles | None, negative_head: tuple[int, int] | None
) -> list[list[Site]]:
    tests = []
    if roles is not None:
        tests.append([elevation_site(data, roles)])
    if negative_head is not None:
        tests.append([negative_site(data, *negative_head)])
    return tests


def scrub_slices(roles: Roles | None, negative_head: tuple[int, int] | None) -> list[ActSlice]:
    """The clean activations :func:`scrub_all` reads, for a clean pass to keep."""
    no_feature = np.zeros((0, 1), dtype=np.int64)
    places = [] if roles is None else [_elevation_place(roles)]
    places += [] if negative_head is None else [_negative_place(*negative_head)]
    return _slices_read([[Site(*place, no_feature)] for place in places])


def scrub_all(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles | None,
    negative_head: tuple[int, int] | None,
    seed: int = 0,
    clean: CleanRun | None = None,
) -> list[ScrubResult]:
    """Every test the roles found allow (elevation, negative, both), on one clean pass
    (``clean``'s, when it kept :func:`scrub_slices`)."""
    tests = _tests(data, roles, negative_head)
    if not tests:
        return []
    shared = clean_activations(model, data, tests, clean)
    out = [] if roles is None else [scrub_elevation(model, data, roles, seed, shared)]
    if negative_head is not None:
        out.append(scrub_negative(model, data, *negative_head, seed, shared))
        if roles is not None:
            out.append(scrub_both(model, data, roles, negative_head, seed, shared))
    return out
