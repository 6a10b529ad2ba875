"""A model's chosen patch scored on its own test pairs, with what guards the verdict.

Beside the patch's IIA: a control as strong elsewhere, the null flip rate, whether
the alignment is trivial (the input itself), and the label-only model's IIA at the
same patch, which tells a variable from the decision it feeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from bracketlens.algorithms.align import outcome
from bracketlens.algorithms.causal import CausalModel, Variable
from bracketlens.algorithms.choice import Candidates
from bracketlens.algorithms.grammar import true_labels
from bracketlens.algorithms.guards import DECISION, variable_guards
from bracketlens.algorithms.locations import Location, pair_activations
from bracketlens.algorithms.pairs import KINDS, Pairs, sample_pairs
from bracketlens.algorithms.result import (
    Alignment,
    PairOutcomes,
    by_kind,
    kind_mean,
    pooled_estimate,
)
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.interventions.interchange import random_basis
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

if TYPE_CHECKING:
    from bracketlens.algorithms.search import Search


@dataclass
class Context:
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


def label_pairs(data: BracketDataset, split_of: np.ndarray, search: Search, seed: int) -> Pairs:
    tokens = data.tokens.numpy()
    values = LABEL_ONLY.values(tokens)
    pairs = sample_pairs(LABEL_ONLY, LABEL_ONLY.variables[0], values, tokens,
                         data.failure_groups.numpy(), split_of, search.counts,
                         np.random.default_rng([seed, 7]))  # fmt: skip
    # 16 pairs per (group, kind): the label-only model aligns at 1.0 where it does at all
    return pairs.in_split("test").thin(16, seed)


def label_iia_here(ctx: Context, location: Location, basis: Tensor | None) -> float | None:
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


def control_patch(
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


def trivial(location: Location, column: np.ndarray, tokens: np.ndarray) -> bool:
    """The variable is a function of the input tokens at the patched positions, and the
    patch is at the input itself (the token embedding)."""
    if location.site.hook != act_name("resid_pre", 0):
        return False
    at = tokens[:, [p for p in location.positions if p < tokens.shape[1]]]
    _, inverse = np.unique(at, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    pairs = np.unique(np.stack([inverse, np.asarray(column, np.int64)], 1), axis=0)
    return len(pairs) == len(np.unique(inverse))


def confirm(
    ctx: Context,
    causal: CausalModel,
    variable: Variable,
    test: Pairs,
    found: Candidates,
    member: int,
    column: np.ndarray,
    fit: int | None = None,
) -> Alignment:
    """Score the patch this model chose (``found.chosen[member]``; with ``fit``, the fit
    of that index in ``found.fits``), its control and its flips on this model's ``test``
    pairs."""
    model, data, seed = ctx.model, ctx.data, ctx.seed
    location, dim, basis = found.chosen[member] if fit is None else found.fits[fit]
    acts = pair_activations(model, data.tokens, test.base, test.source, [location.site])
    result = outcome(model, acts, location, basis)
    correct = result.predicted == test.label
    where, control, control_kind = control_patch(
        location, dim, location.site.width(model.cfg), seed
    )
    control_correct = outcome(model, acts, where, control).predicted == test.label
    unchanged = test.kind == KINDS.index("unchanged")
    telling = test.telling
    iia = pooled_estimate([PairOutcomes(correct, test.kind, test.base, test.source)], seed)
    label_here = label_iia_here(ctx, location, basis)
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
        coverage=coverage(correct, test),
        validation_iia=found.validation_iia[member] if fit is None else found.fit_iia[member][fit],
        n_pairs={k: int((test.kind == i).sum()) for i, k in enumerate(KINDS)},
        correct=correct,
        kind=test.kind,
        telling=telling,
        group=test.group,
        control_correct=control_correct,
        flipped=result.flipped,
        base=test.base,
        source=test.source,
        control_kind=control_kind,
        trivial=trivial(location, column, data.tokens.numpy()),
        label_iia_here=label_here,
        decision_carrying=decision,
        guards=variable_guards(
            iia,
            correct,
            test.kind,
            telling,
            control_correct,
            result.flipped,
            decision,
            (test.base, test.source),
        ),
    )


def coverage(correct: np.ndarray, pairs: Pairs) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for group in FailureGroup:
        rows = pairs.group == group
        out[group.label] = kind_mean(correct[rows], pairs.kind[rows]) if rows.any() else None
    return out
