"""The stages of :mod:`bracketlens.pipeline`, each named after what it adds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from bracketlens.activations import ActSlice
from bracketlens.analysis import accuracy, group_accuracy
from bracketlens.circuits.elevation import Roles, elevation_from_pass
from bracketlens.circuits.negative import negative_feeders, negative_head_attention
from bracketlens.circuits.patching import PatchedAttention, patched_attention
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import MAX_PARENS, tokenize
from bracketlens.data.truth import is_balanced
from bracketlens.errors import BracketLensError
from bracketlens.interventions.ablate import AblationEffect, CleanRun, clean_run, mean_ablations
from bracketlens.interventions.attribution_patching import attribution_patching
from bracketlens.interventions.paths import path_patch_elevation, path_patch_slices
from bracketlens.interventions.scrub import scrub_all, scrub_slices
from bracketlens.localisation import (
    HeadRoles,
    Neurons,
    RoleFinding,
    locate_neurons,
    locate_start_close,
)
from bracketlens.model.predict import Evaluation, predict_proba
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes import Gathered, Observation, ReadSlices, read_slices
from bracketlens.plan import PassPlan
from bracketlens.stats import Estimate


def check_data(data: BracketDataset) -> None:
    """Raise unless ``data`` has what every stage needs."""
    opens = data.starts_open
    if len(data) < 20 or not data.labels.any() or data.labels.all() or not opens.any():
        raise BracketLensError(
            "the analysis needs at least 20 strings, balanced and unbalanced ones, and some "
            "starting with '('; use a larger sample (e.g. --n 5000)"
        )


def split(
    data: BracketDataset, seed: int, causal_n: int, halves: bool
) -> tuple[Tensor, BracketDataset, BracketDataset]:
    """Group ids (0: fit half, 1: held out), the held-out half, and the strings to intervene on.

    Without ``halves`` every string is in the fit group and interventions use the first
    ``causal_n`` strings.
    """
    if causal_n < 1:
        raise BracketLensError(f"--causal-n must be a positive number of strings, got {causal_n}")
    if not halves:
        return torch.zeros(len(data), dtype=torch.long), data, data[:causal_n]
    _, held_out = data.split(seed)
    return data.split_groups(seed), held_out, held_out[:causal_n]


def roles_of(heads: HeadRoles) -> tuple[Roles | None, str]:
    """The roles the circuit analyses use, and where they come from, in words."""
    try:
        roles = heads.roles()
    except BracketLensError:
        return None, "not found: localisation found no elevation circuit"
    if not heads.tally_head.found:
        return roles, (
            f"localised; no layer-0 head passes the tally test, so the best candidate "
            f"0.{roles.tally_head} stands in"
        )
    return roles, "localised"


def read_pass(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles | None,
    heads: HeadRoles,
    groups: Tensor,
    plan: PassPlan,
) -> ReadSlices | None:
    """The pass at the read position (with the negative head's feeders when the plan asks)."""
    if roles is None:
        return None
    feeders = heads.negative(data) if plan.read_feeders else None
    return read_slices(
        model,
        data,
        layer=roles.elevation_layer,
        position=roles.read_position,
        groups=groups,
        feeders_of=feeders,
    )


def circuits(
    model: BracketTransformer,
    data: BracketDataset,
    seen: Observation,
    read: ReadSlices | None,
    direction: Tensor,
    roles: Roles | None,
    negative: tuple[int, int] | None,
) -> dict[str, Any]:
    """The elevation and negative-head analyses, from the two passes: the fields of
    :class:`Analysis` they fill. ``negative``: the negative head where ``data`` has strings
    that go negative (:meth:`HeadRoles.negative`)."""
    elevation = negative_attention = feeders = None
    views: list[PatchedAttention] = []
    if roles is not None and read is not None:
        gathered = Gathered(seen, read, roles.elevation_head)
        elevation = elevation_from_pass(model, data, roles, gathered)
        views = _patching_views(model, roles)
    if negative is not None:
        layer, head = negative
        rows = seen.attention_from_0[:, layer, head]
        negative_attention = negative_head_attention(model, data, layer, head, rows=rows)
        sums = None if read is None else read.feeders
        feeders = negative_feeders(model, data, layer, head, direction, sums=sums)
    return {
        "elevation": elevation,
        "negative_attention": negative_attention,
        "negative_feeders": feeders,
        "patching": views,
    }


def _patching_views(model: BracketTransformer, roles: Roles) -> list[PatchedAttention]:
    """The course's views of the tallying head: its attention on all-'(' strings."""
    left, right = "(" * MAX_PARENS, ")" * MAX_PARENS
    head = roles.tally_head
    return [
        patched_attention(model, 0, head, run_on=left),
        patched_attention(model, 0, head, run_on=left, keys_from=[left, right]),
        patched_attention(model, 0, head, run_on=right, queries_from=[left]),
    ]


@dataclass(frozen=True)
class Ablated:
    """What the ablation stage adds, and the clean run the interventions start from.

    Attributes:
        clean: the clean pass over the held-out strings (block inputs dropped).
        table: every component's mean-ablation effect (empty unless the plan keeps it).
        start_close: the component that flags strings starting with ')'.
    """

    clean: CleanRun
    table: list[AblationEffect]
    start_close: RoleFinding


def ablate(
    model: BracketTransformer,
    causal: BracketDataset,
    roles: Roles | None,
    heads: HeadRoles,
    plan: PassPlan,
) -> Ablated:
    """Mean ablations on the held-out strings, and the start-close component they name.

    Without the plan's ablation table only the strings the start-close role is judged
    on (those starting with ')', and the unbalanced ones starting with '(' it must
    matter less for) are ablated. The clean pass the ablations start from also keeps,
    when the plan asks, what the interventions read from the clean run of the same strings.
    """
    closes = ~causal.starts_open & (causal.seq_length > 0)
    rows = None if plan.ablation_table else closes | (causal.starts_open & ~causal.labels)
    keep = _intervention_slices(roles, heads, model.cfg.n_heads) if plan.intervention_slices else []
    clean = clean_run(model, causal, rows, keep=keep)
    ablations = mean_ablations(model, causal, rows, clean)
    chosen = causal if rows is None else causal[rows]
    base = clean.logits[slice(None) if rows is None else rows].softmax(-1)[:, 1]
    start_close = locate_start_close(ablations, base, chosen)
    # the block inputs kept for the ablations are read by nothing after them
    clean = replace(clean, resid_pre=[], z=[])
    return Ablated(clean, ablations if plan.ablation_table else [], start_close)


def _intervention_slices(roles: Roles | None, heads: HeadRoles, n_heads: int) -> list[ActSlice]:
    """The clean activations the interventions read (kept by the ablations' clean pass)."""
    paths = []
    if roles is not None and roles.elevation_layer > 0:
        paths = path_patch_slices(roles, n_heads)
    return [*scrub_slices(roles, heads.negative()), *paths]


def interventions(
    model: BracketTransformer,
    causal: BracketDataset,
    roles: Roles | None,
    negative: tuple[int, int] | None,
    seed: int,
    clean: CleanRun,
) -> dict[str, Any]:
    """Resampling tests, path patching and attribution patching on the held-out strings:
    the fields of :class:`Analysis` they fill."""
    scrubs = scrub_all(model, causal, roles, negative, seed, clean)
    paths = None
    if roles is not None and roles.elevation_layer > 0:
        paths = path_patch_elevation(model, causal, roles, seed, clean=clean.acts)
    return {
        "scrubs": scrubs,
        "path_patch": paths,
        "attribution_patching": attribution_patching(model, causal, means=clean.means),
    }


@dataclass(frozen=True)
class HeldOut:
    """What the held-out strings give: the ablations and, when asked, the interventions.

    Attributes:
        table: every component's mean-ablation effect (empty unless the plan keeps it).
        start_close: the component that flags strings starting with ')'.
        intervened: the fields :func:`interventions` fills (empty when not asked for).
    """

    table: list[AblationEffect]
    start_close: RoleFinding
    intervened: dict[str, Any]


def held_out(
    model: BracketTransformer,
    causal: BracketDataset,
    roles: Roles | None,
    heads: HeadRoles,
    plan: PassPlan,
    seed: int,
    intervene: bool,
) -> HeldOut:
    """Stages 5 and 7: the ablations, then the interventions from the same clean pass.

    They read only the held-out strings and the heads, nothing the read pass, the circuit
    analyses or the explorer compute, so a child process can run them beside those. The
    clean pass they share stays in the process that runs them: only the findings return.
    """
    ablated = ablate(model, causal, roles, heads, plan)
    intervened = {}
    if intervene:
        intervened = interventions(model, causal, roles, heads.negative(), seed, ablated.clean)
    return HeldOut(ablated.table, ablated.start_close, intervened)


def neurons(
    model: BracketTransformer,
    read: ReadSlices | None,
    data: BracketDataset,
    fit: Bool[Tensor, " batch"],
    roles: Roles | None,
    direction: Tensor,
) -> Neurons:
    """The MLP neurons feeding the elevation head (none without a read pass)."""
    if read is None or roles is None:
        return Neurons([], {})
    return Neurons(*locate_neurons(model, read, data, fit, roles, direction))


@dataclass(frozen=True)
class Observed:
    """Accuracy (with intervals) and the final LayerNorm fit's r^2, from the observation."""

    evaluation: Evaluation
    accuracy: Estimate
    group_accuracy: dict[str, Estimate]
    ln_final_r2: dict[str, float]


def observed(seen: Observation, data: BracketDataset, halves: bool) -> Observed:
    """Accuracy per failure group and the final LayerNorm fit's r^2 on each half."""
    evaluation = seen.evaluation(data)
    final = seen.final_fit([0])
    r2 = {"fit_half": final.r2}
    if halves:
        r2["held_out_half"] = seen.final_ln[1].score(final)
    return Observed(evaluation, accuracy(evaluation.correct), group_accuracy(evaluation), r2)


def rescore(model: BracketTransformer, strings: list[str] | None) -> list[dict[str, object]]:
    """P(balanced) of adversarial strings under this model and their true label; wrongest first."""
    if not strings:
        return []
    p = predict_proba(model, tokenize(strings)).tolist()
    rows = [
        {"string": s, "label": is_balanced(s), "p_balanced": pb}
        for s, pb in zip(strings, p, strict=True)
    ]
    return sorted(rows, key=lambda r: -abs(float(r["label"]) - float(r["p_balanced"])))
