"""Checks for the attention-head exercises: patterns, OV matrices, the pre-2.0 direction, q/k.

Where the course's function takes a layer and head, every layer and head is
checked, not only the course's 2.0; a learner whose answer matches another head
is told which one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from torch import Tensor

from bracketlens.activations import get_activations
from bracketlens.arena import course
from bracketlens.arena._checks_components import centring_mistakes
from bracketlens.arena._compare import (
    ACTIVATION_TOL,
    DIRECTION_TOL,
    WEIGHT_TOL,
    Case,
    CheckResult,
    Mistake,
    Tolerance,
    looks_like,
    run_cases,
)
from bracketlens.arena.datasets import CourseData, SimpleTokenizer, labels_of, tokens_of
from bracketlens.attribution.components import centre_on_balanced, components_in_direction
from bracketlens.attribution.directions import unbalanced_direction_post_ln
from bracketlens.attribution.layernorm import fit_layernorm
from bracketlens.model.names import act_name, ln_name
from bracketlens.model.transformer import BracketTransformer

LearnerFn = Callable[..., Any]

TOLERANCES: dict[str, Tolerance] = {
    "get_attn_probs": ACTIVATION_TOL,
    "get_WOV": WEIGHT_TOL,
    "get_pre_20_dir": DIRECTION_TOL,
    "out_by_component_in_pre_20_unbalanced_dir": DIRECTION_TOL,
    "get_q_and_k_for_given_input": ACTIVATION_TOL,
}
Q_AND_K_INPUTS = ("()", "(()())", "))((")


def _heads(model: BracketTransformer) -> list[tuple[int, int]]:
    return list(itertools.product(range(model.cfg.n_layers), range(model.cfg.n_heads)))


def _other_heads(
    model: BracketTransformer, layer: int, head: int, value: Callable[[int, int], Tensor], what: str
) -> list[Mistake]:
    """The answer is right for another head: the indices are mixed up."""
    return [
        looks_like(
            f"your result is head {lay}.{h}'s {what}; index layer {layer}, head {head}",
            lambda lay=lay, h=h: value(lay, h),  # type: ignore[misc]
        )
        for lay, h in _heads(model)
        if (lay, h) != (layer, head)
    ]


def check_get_attn_probs(fn: LearnerFn, model: BracketTransformer, data: CourseData) -> CheckResult:
    """Attention probabilities ``[batch, seqQ, seqK]`` of every head."""
    tokens = tokens_of(data)

    @cache
    def pattern(layer: int) -> Tensor:
        name = act_name("pattern", layer)
        return get_activations(model, tokens, name)[name]

    def scores(layer: int, head: int) -> Tensor:
        name = act_name("attn_scores", layer)
        return get_activations(model, tokens, name)[name][:, head]

    def cases() -> Iterator[Case]:
        for layer, head in _heads(model):
            mistakes = [
                looks_like(
                    "you returned attention scores; return the probabilities "
                    "(hook_pattern), which sum to 1 over the keys",
                    lambda layer=layer, head=head: scores(layer, head),  # type: ignore[misc]
                ),
                *_other_heads(model, layer, head, lambda lay, h: pattern(lay)[:, h], "pattern"),
            ]
            yield Case(
                f"get_attn_probs(model, data, {layer}, {head})",
                lambda layer=layer, head=head: fn(model, data, layer, head),  # type: ignore[misc]
                course.get_attn_probs(model, data, layer, head),
                TOLERANCES["get_attn_probs"],
                mistakes,
            )

    return run_cases("get_attn_probs", cases())


def check_get_WOV(fn: LearnerFn, model: BracketTransformer) -> CheckResult:
    """The OV matrix ``W_V[layer, head] @ W_O[layer, head]`` of every head."""

    def cases() -> Iterator[Case]:
        for layer, head in _heads(model):
            w_v, w_o = model.W_V[layer, head].detach(), model.W_O[layer, head].detach()
            w_q, w_k = model.W_Q[layer, head].detach(), model.W_K[layer, head].detach()
            mistakes = [
                looks_like(
                    "you multiplied in the wrong order: W_OV = W_V @ W_O "
                    "([d_model, d_head] @ [d_head, d_model])",
                    lambda w_v=w_v, w_o=w_o: w_o @ w_v,  # type: ignore[misc]
                ),
                looks_like(
                    "you returned the QK matrix W_Q @ W_K.T; the OV matrix is W_V @ W_O",
                    lambda w_q=w_q, w_k=w_k: w_q @ w_k.T,  # type: ignore[misc]
                ),
                looks_like(
                    "your result is the transpose of W_V @ W_O (rows must index the input "
                    "residual direction: x @ W_OV is what the head writes)",
                    lambda w_v=w_v, w_o=w_o: (w_v @ w_o).T,  # type: ignore[misc]
                ),
                *_other_heads(
                    model, layer, head, lambda lay, h: course.get_WOV(model, lay, h), "OV matrix"
                ),
            ]
            yield Case(
                f"get_WOV(model, {layer}, {head})",
                lambda layer=layer, head=head: fn(model, layer, head),  # type: ignore[misc]
                course.get_WOV(model, layer, head),
                TOLERANCES["get_WOV"],
                mistakes,
            )

    return run_cases("get_WOV", cases())


def check_get_pre_20_dir(fn: LearnerFn, model: BracketTransformer, data: CourseData) -> CheckResult:
    """The unbalanced direction at head 2.0's input, position 1."""
    case = Case(
        "get_pre_20_dir(model, data)",
        lambda: fn(model, data),
        course.get_pre_20_dir(model, data),
        TOLERANCES["get_pre_20_dir"],
        _pre_20_mistakes(model, tokens_of(data)),
    )
    return run_cases("get_pre_20_dir", [case])


def _pre_20_mistakes(model: BracketTransformer, tokens: Tensor) -> list[Mistake]:
    """Each step of ln1-fit.T @ W_OV @ pre-final direction done at the wrong place or way."""
    layer, head, pos = course.ELEVATION_LAYER, course.ELEVATION_HEAD, course.READ_POSITION
    other_head = (head + 1) % model.cfg.n_heads
    post = unbalanced_direction_post_ln(model).detach()
    ln1_at = cache(lambda p: fit_layernorm(model, tokens, ln_name(layer), p).coef)
    final_at = cache(lambda p: fit_layernorm(model, tokens, "ln_final", p).coef.T @ post)
    ov = course.get_WOV(model, layer, head)
    reads = f"fit position {pos} (seq_pos={pos}), the position head {layer}.{head} reads"
    return [
        looks_like(
            f"your fit of layer {layer}'s ln1 pools every position; {reads}",
            lambda: ln1_at(None).T @ ov @ final_at(0),
        ),
        looks_like(
            f"your fit of layer {layer}'s ln1 is at position 0; {reads}",
            lambda: ln1_at(0).T @ ov @ final_at(0),
        ),
        looks_like(
            "your pre-final-LN direction comes from a fit of ln_final pooled over positions; "
            "fit ln_final at position 0 (get_pre_final_ln_dir)",
            lambda: ln1_at(pos).T @ ov @ final_at(None),
        ),
        looks_like(
            f"you did not pull back through layer {layer}'s ln1: multiply W_OV @ d by the "
            f"transpose of its linear fit's coef_ (fitted at position {pos})",
            lambda: ov @ final_at(0),
        ),
        looks_like(
            "you multiplied by the ln1 fit's coef_ instead of its transpose (coef_.T pulls "
            "a direction back)",
            lambda: ln1_at(pos) @ ov @ final_at(0),
        ),
        looks_like(
            "you used W_OV.T; the head writes x @ W_OV, so a direction d pulls back to W_OV @ d",
            lambda: ln1_at(pos).T @ ov.T @ final_at(0),
        ),
        looks_like(
            f"you used head {layer}.{other_head}'s OV matrix; the course's head is {layer}.{head}",
            lambda: ln1_at(pos).T @ course.get_WOV(model, layer, other_head) @ final_at(0),
        ),
    ]


def check_out_by_component_in_pre_20_unbalanced_dir(
    value: Tensor, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """``[7, batch]``: components before layer 2 at position 1 on the pre-2.0 direction, centred."""
    tokens, labels = tokens_of(data), labels_of(data)
    direction = course.get_pre_20_dir(model, data)
    keep = 1 + course.ELEVATION_LAYER * (
        model.cfg.n_heads + 1
    )  # embeds, then heads + MLP per layer
    projected = cache(lambda pos: components_in_direction(model, tokens, direction, pos).values)
    pos = course.READ_POSITION
    mistakes = [
        *centring_mistakes(lambda: projected(pos)[:keep], labels),
        looks_like(
            f"you kept every component; keep the {keep} written before layer "
            f"{course.ELEVATION_LAYER} (embeds to mlp {course.ELEVATION_LAYER - 1})",
            lambda: centre_on_balanced(projected(pos), labels),
        ),
        looks_like(
            f"your values match position 0; head {course.ELEVATION_LAYER}."
            f"{course.ELEVATION_HEAD} reads position {pos}: project the output there",
            lambda: centre_on_balanced(projected(0)[:keep], labels),
        ),
    ]
    case = Case(
        "out_by_component_in_pre_20_unbalanced_dir",
        lambda: value,
        centre_on_balanced(projected(pos)[:keep], labels),
        TOLERANCES["out_by_component_in_pre_20_unbalanced_dir"],
        mistakes,
    )
    return run_cases("out_by_component_in_pre_20_unbalanced_dir", [case])


def check_get_q_and_k_for_given_input(
    fn: LearnerFn, model: BracketTransformer, tokenizer: SimpleTokenizer
) -> CheckResult:
    """Queries and keys ``[seq, head, d_head]`` of every layer, for a few strings."""

    def cases() -> Iterator[Case]:
        for layer, parens in itertools.product(range(model.cfg.n_layers), Q_AND_K_INPUTS):
            q, k = course.get_q_and_k_for_given_input(model, tokenizer, parens, layer)
            mistakes = [
                looks_like("return (q, k) in that order", lambda q=q, k=k: (k, q)),  # type: ignore[misc]
                looks_like(
                    "drop the batch dimension: return q[0] and k[0] of the cached [1, seq, "
                    "head, d_head] activations",
                    lambda q=q, k=k: (q[None], k[None]),  # type: ignore[misc]
                ),
            ]
            for other in range(model.cfg.n_layers):
                if other != layer:
                    mistakes.append(
                        looks_like(
                            f"your q and k are layer {other}'s; use blocks.{layer}.attn.hook_q/k",
                            lambda other=other, parens=parens: course.get_q_and_k_for_given_input(  # type: ignore[misc]
                                model, tokenizer, parens, other
                            ),
                        )
                    )
            yield Case(
                f"get_q_and_k_for_given_input(model, tokenizer, {parens!r}, {layer})",
                lambda parens=parens, layer=layer: fn(model, tokenizer, parens, layer),  # type: ignore[misc]
                (q, k),
                TOLERANCES["get_q_and_k_for_given_input"],
                mistakes,
                parts=("q", "k"),
            )

    return run_cases("get_q_and_k_for_given_input", cases())


__all__ = [
    "TOLERANCES",
    "check_get_WOV",
    "check_get_attn_probs",
    "check_get_pre_20_dir",
    "check_get_q_and_k_for_given_input",
    "check_out_by_component_in_pre_20_unbalanced_dir",
]
