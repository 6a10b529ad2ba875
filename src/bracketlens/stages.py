"""The stages of :mod:`bracketlens.pipeline`, each named after what it adds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from bracketlens.activations import ActSlice
from bracketlens.analysis import Analysis, accuracy, group_accuracy
from bracketlens.circuits.elevation import Roles, elevation_from_pass
from bracketlens.circuits.negative import negative_feeders, negative_head_attention
from bracketlens.circuits.patching import PatchedAttention, patched_attention
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import MAX_PARENS, tokenize
from bracketlens.data.truth import is_balanced
from bracketlens.engine import Gathered, Observation, ReadSlices, read_slices
from bracketlens.errors import BracketLensError
from bracketlens.explorer.export import explorer_export
from bracketlens.localisation import (
    HeadRoles,
    Localisation,
    RoleFinding,
    locate_neurons,
    locate_start_close,
)
from bracketlens.model.predict import predict_proba
from bracketlens.model.transformer import BracketTransformer
from bracketlens.verify.ablate import AblationEffect, CleanRun, clean_run, mean_ablations
from bracketlens.verify.attribution_patching import attribution_patching
from bracketlens.verify.paths import path_patch_elevation, path_patch_slices
from bracketlens.verify.scrub import scrub_all, scrub_slices


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
    with_feeders: bool,
) -> ReadSlices | None:
    """The pass at the read position (with the negative head's feeders when asked for)."""
    if roles is None:
        return None
    feeders = (
        heads.negative_head.layer_head() if with_feeders and _has_negative(heads, data) else None
    )
    return read_slices(
        model,
        data,
        layer=roles.elevation_layer,
        position=roles.read_position,
        groups=groups,
        feeders_of=feeders,
    )


def _has_negative(heads: HeadRoles | Localisation, data: BracketDataset) -> bool:
    return heads.negative_head.found and bool(data.failure_types.negative.any())


def circuits(
    result: Analysis,
    model: BracketTransformer,
    seen: Observation,
    read: ReadSlices | None,
    direction: Tensor,
) -> Analysis:
    """The elevation and negative-head analyses, from the two passes."""
    data, roles, found = result.data, result.roles, result.localisation
    elevation = negative_attention = feeders = None
    views: list[PatchedAttention] = []
    if roles is not None and read is not None:
        gathered = Gathered(seen, read, roles.elevation_head)
        elevation = elevation_from_pass(model, data, roles, gathered)
        views = _patching_views(model, roles)
    if _has_negative(found, data):
        layer, head = found.negative_head.layer_head()
        rows = seen.attention_from_0[:, layer, head]
        negative_attention = negative_head_attention(model, data, layer, head, rows=rows)
        sums = None if read is None else read.feeders
        feeders = negative_feeders(model, data, layer, head, direction, sums=sums)
    return replace(
        result,
        elevation=elevation,
        negative_attention=negative_attention,
        negative_feeders=feeders,
        patching=views,
    )


def _patching_views(model: BracketTransformer, roles: Roles) -> list[PatchedAttention]:
    """The course's views of the tallying head: its attention on all-'(' strings."""
    left, right = "(" * MAX_PARENS, ")" * MAX_PARENS
    head = roles.tally_head
    return [
        patched_attention(model, 0, head, run_on=left),
        patched_attention(model, 0, head, run_on=left, keys_from=[left, right]),
        patched_attention(model, 0, head, run_on=right, queries_from=[left]),
    ]


def ablate(
    model: BracketTransformer,
    causal: BracketDataset,
    table: bool,
    roles: Roles | None,
    heads: HeadRoles,
    interventions: bool,
) -> tuple[CleanRun, list[AblationEffect], RoleFinding]:
    """Mean ablations on the held-out strings, and the start-close component they name.

    Without ``table`` only the strings the start-close role is judged on (those
    starting with ')', and the unbalanced ones starting with '(' it must matter less
    for) are ablated, and no ablation is kept for the report. The clean pass the
    ablations start from also keeps, when ``interventions`` follow, what they read
    from the clean run of the same strings.
    """
    closes = ~causal.starts_open & (causal.seq_length > 0)
    rows = None if table else closes | (causal.starts_open & ~causal.labels)
    keep = _intervention_slices(roles, heads, model.cfg.n_heads) if interventions else []
    clean = clean_run(model, causal, rows, keep=keep)
    ablations = mean_ablations(model, causal, rows, clean)
    chosen = causal if rows is None else causal[rows]
    base = clean.logits[slice(None) if rows is None else rows].softmax(-1)[:, 1]
    start_close = locate_start_close(ablations, base, chosen)
    # the block inputs kept for the ablations are read by nothing after them
    clean = replace(clean, resid_pre=[], z=[])
    return clean, ablations if table else [], start_close


def _negative_head(heads: HeadRoles | Localisation) -> tuple[int, int] | None:
    return heads.negative_head.layer_head() if heads.negative_head.found else None


def _intervention_slices(roles: Roles | None, heads: HeadRoles, n_heads: int) -> list[ActSlice]:
    """The clean activations the interventions read (kept by the ablations' clean pass)."""
    paths = []
    if roles is not None and roles.elevation_layer > 0:
        paths = path_patch_slices(roles, n_heads)
    return [*scrub_slices(roles, _negative_head(heads)), *paths]


def interventions(
    result: Analysis,
    model: BracketTransformer,
    causal: BracketDataset,
    seed: int,
    clean: CleanRun,
) -> Analysis:
    """Resampling tests, path patching and attribution patching on the held-out strings."""
    roles = result.roles
    scrubs = scrub_all(model, causal, roles, _negative_head(result.localisation), seed, clean)
    paths = None
    if roles is not None and roles.elevation_layer > 0:
        paths = path_patch_elevation(model, causal, roles, seed, clean=clean.acts)
    return replace(
        result,
        scrubs=scrubs,
        path_patch=paths,
        attribution_patching=attribution_patching(model, causal, means=clean.means),
    )


def neurons(
    model: BracketTransformer,
    read: ReadSlices | None,
    data: BracketDataset,
    fit: Bool[Tensor, " batch"],
    roles: Roles | None,
    direction: Tensor,
) -> dict[str, Any]:
    """The MLP neurons feeding the elevation head (none without a read pass)."""
    if read is None or roles is None:
        return {"mlp_neurons": [], "neuron_evidence": {}}
    names, evidence = locate_neurons(model, read, data, fit, roles, direction)
    return {"mlp_neurons": names, "neuron_evidence": evidence}


def observed(seen: Observation, data: BracketDataset, halves: bool) -> dict[str, Any]:
    """Accuracy (with intervals) and the final LayerNorm fit's r^2, from the observation."""
    evaluation = seen.evaluation(data)
    final = seen.final_fit([0])
    r2 = {"fit_half": final.r2}
    if halves:
        r2["held_out_half"] = seen.final_ln[1].score(final)
    return {
        "evaluation": evaluation,
        "accuracy": accuracy(evaluation.correct),
        "group_accuracy": group_accuracy(evaluation),
        "ln_final_r2": r2,
    }


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


def explorer(result: Analysis, model: BracketTransformer) -> Analysis:
    """Add what the report's in-page model needs: weights, means over the data, the roles."""
    negative = result.localisation.negative_head
    export = explorer_export(
        model, result.data, result.roles, negative.layer_head() if negative.found else None
    )
    return replace(result, explorer=export)
