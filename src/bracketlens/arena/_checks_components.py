"""Checks for the component exercises: the residual stream split into 10 components.

The value checks take the learner's tensor rather than a function, as the course's
``test_out_by_component_in_unbalanced_dir(tensor, model, data)`` does; the usual
mistakes are forgetting to centre on the balanced strings and reading the wrong
position.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bracketlens.activations import get_activations
from bracketlens.arena import course
from bracketlens.arena._compare import (
    ACTIVATION_TOL,
    DIRECTION_TOL,
    Case,
    CheckResult,
    Mistake,
    Parts,
    Tolerance,
    looks_like,
    run_cases,
)
from bracketlens.arena.datasets import CourseData, labels_of, tokens_of
from bracketlens.attribution.components import (
    centre_on_balanced,
    component_labels,
    components_in_direction,
)
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

LearnerFn = Callable[..., Any]

TOLERANCES: dict[str, Tolerance] = {
    "get_out_by_components": ACTIVATION_TOL,
    "out_by_component_in_unbalanced_dir": DIRECTION_TOL,
}


def check_get_out_by_components(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """Every component's output at every position, in the course's order of 10 components."""
    tokens = tokens_of(data)
    expected = course.get_out_by_components(model, data)

    def per_layer_attention() -> Tensor:
        names = [act_name("attn_out", layer) for layer in range(model.cfg.n_layers)]
        acts = get_activations(model, tokens, names)
        parts = [expected[0]]
        for layer, name in enumerate(names):
            parts += [acts[name], expected[(layer + 1) * (model.cfg.n_heads + 1)]]
        return torch.stack(parts)

    def token_embeds_only() -> Tensor:
        embed = get_activations(model, tokens, "hook_embed")["hook_embed"]
        return torch.cat([embed[None], expected[1:]])

    mistakes = [
        looks_like(
            "component 0 must be the token plus positional embeddings "
            "(hook_embed + hook_pos_embed); yours is the token embeddings only",
            token_embeds_only,
        ),
        _wrong_order(expected, component_labels(model.cfg)),
        looks_like(
            "you have one attention component per layer (hook_attn_out); split it into "
            "each head's output (hook_result, or hook_z @ W_O for each head)",
            per_layer_attention,
        ),
    ]
    case = Case(
        "get_out_by_components(model, data)",
        lambda: fn(model, data),
        expected,
        TOLERANCES["get_out_by_components"],
        mistakes,
    )
    return run_cases("get_out_by_components", [case])


def _wrong_order(expected: Tensor, labels: list[str]) -> Mistake:
    """Diagnose components that are all right but in another order."""

    def diagnose(got: Parts, tol: Tolerance) -> str | None:
        (g,) = got
        if g.shape != expected.shape:
            return None
        bound = tol.bound(expected.double())
        match = []
        for i in range(len(g)):
            errors = [float((g[i] - expected[j].double()).abs().max()) for j in range(len(g))]
            j = int(np.argmin(errors))
            if errors[j] > bound:
                return None
            match.append(j)
        moved = [f"your [{i}] is our '{labels[j]}'" for i, j in enumerate(match) if i != j]
        return (
            f"components in the wrong order ({', '.join(moved)}); the order is {', '.join(labels)}"
        )

    return diagnose


def check_out_by_component_in_unbalanced_dir(
    value: Tensor, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """``[10, batch]``: each component at position 0 on the pre-final-LN direction, centred."""
    tokens, labels = tokens_of(data), labels_of(data)
    direction = course.get_pre_final_ln_dir(model, data)
    projected = cache(lambda d, pos: components_in_direction(model, tokens, d, pos).values)
    mistakes = centring_mistakes(lambda: projected(direction, 0), labels)
    for pos in _other_positions(tokens.shape[1], 0):
        mistakes.append(
            looks_like(
                f"your values match the components' output at position {pos}; use position "
                "0 ([start]), where the class is read",
                lambda pos=pos: centre_on_balanced(projected(direction, pos), labels),  # type: ignore[misc]
            )
        )
    post = course.get_post_final_ln_dir(model)
    mistakes.append(
        looks_like(
            "you projected on the post-LN direction; project on the pre-final-LN direction "
            "(get_pre_final_ln_dir), which lives in the residual stream",
            lambda: centre_on_balanced(projected(post, 0), labels),
        )
    )
    expected = centre_on_balanced(projected(direction, 0), labels)
    case = Case(
        "out_by_component_in_unbalanced_dir",
        lambda: value,
        expected,
        TOLERANCES["out_by_component_in_unbalanced_dir"],
        mistakes,
    )
    return run_cases("out_by_component_in_unbalanced_dir", [case])


def centring_mistakes(uncentred: Callable[[], Tensor], balanced: Tensor) -> list[Mistake]:
    """Forgot to centre, or centred on every string instead of the balanced ones."""
    return [
        looks_like(
            "you did not centre: subtract each component's mean over the balanced strings "
            "(values[:, data.isbal].mean(1, keepdim=True))",
            uncentred,
        ),
        looks_like(
            "you centred on the mean over all strings; subtract the mean over the balanced "
            "strings only (data.isbal)",
            lambda: uncentred() - uncentred().mean(1, keepdim=True),
        ),
    ]


def _other_positions(seq: int, wanted: int) -> list[int]:
    """A few positions a learner might have used by mistake."""
    return [p for p in dict.fromkeys((0, 1, 2, seq - 1)) if p != wanted and p < seq]


__all__ = [
    "TOLERANCES",
    "centring_mistakes",
    "check_get_out_by_components",
    "check_out_by_component_in_unbalanced_dir",
]
