"""Checks for the logit-attribution exercises: activations, LayerNorm fits, directions.

Each ``check_<name>`` runs the learner's function and ours on the same inputs
(several LayerNorms and positions where the function takes them) and returns a
:class:`~bracketlens.arena._compare.CheckResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, cast

import numpy as np
from sklearn.linear_model import LinearRegression
from torch import Tensor

from bracketlens.activations import get_activations, layernorm_hook_names
from bracketlens.arena import course
from bracketlens.arena._compare import (
    ACTIVATION_TOL,
    DIRECTION_TOL,
    WEIGHT_TOL,
    AnswerError,
    Case,
    CheckResult,
    Mistake,
    Parts,
    Tolerance,
    article,
    looks_like,
    run_cases,
    to_tensor,
)
from bracketlens.arena._sklearn_fit import course_ln_fit
from bracketlens.arena.datasets import CourseData, tokens_of
from bracketlens.layernorm_fit import LayerNormFit
from bracketlens.model.layers import LayerNorm
from bracketlens.model.names import ln_name
from bracketlens.model.transformer import BracketTransformer

LearnerFn = Callable[..., Any]

TOLERANCES: dict[str, Tolerance] = {
    "get_activations": ACTIVATION_TOL,
    "get_post_final_ln_dir": WEIGHT_TOL,
    "get_ln_fit": DIRECTION_TOL,
    "get_pre_final_ln_dir": DIRECTION_TOL,
}


def check_get_activations(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """One name gives that hook's tensor; a list gives a cache holding each name."""
    toks = tokens_of(data)
    tol = TOLERANCES["get_activations"]

    def cases() -> Iterator[Case]:
        for name in ("hook_embed", "blocks.1.attn.hook_pattern"):
            yield Case(
                f"get_activations(model, data.toks, {name!r})",
                lambda name=name: fn(model, toks, name),  # type: ignore[misc]
                get_activations(model, toks, name)[name],
                tol,
                convert=_single_activation,
            )
        names = ["blocks.0.hook_resid_post", "ln_final.hook_normalized"]
        ours = get_activations(model, toks, names)
        yield Case(
            f"get_activations(model, data.toks, {names!r})",
            lambda: fn(model, toks, names),
            tuple(ours[n] for n in names),
            tol,
            convert=lambda raw: _cached(raw, names),
            parts=tuple(names),
        )

    return run_cases("get_activations", cases())


def _single_activation(raw: object) -> Tensor:
    if hasattr(raw, "keys"):
        raise AnswerError("for a single name return the tensor itself (cache[name]), not a cache")
    return to_tensor(raw)


def _cached(raw: object, names: list[str]) -> Parts:
    if not hasattr(raw, "keys"):
        raise AnswerError(
            f"returned a {type(raw).__name__}; for a list of names return the "
            "ActivationCache (or a dict) holding each of them"
        )
    out = []
    for name in names:
        try:
            out.append(to_tensor(raw[name]))  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            raise AnswerError(
                f"the result has no entry {name!r}; for a list of names return the "
                "ActivationCache (or a dict) holding each of them"
            ) from None
    return tuple(out)


def check_get_post_final_ln_dir(fn: LearnerFn, model: BracketTransformer) -> CheckResult:
    """The unbalanced direction after the final LayerNorm."""
    expected = course.get_post_final_ln_dir(model)
    w_u = model.W_U.detach()
    mistakes = [
        looks_like(
            "wrong sign: the unbalanced direction is W_U[:, 0] - W_U[:, 1] (logit 0 is "
            "'unbalanced')",
            lambda: -expected,
        ),
        looks_like(
            "you returned W_U[:, 0]; the direction is the difference W_U[:, 0] - W_U[:, 1]",
            lambda: w_u[:, 0],
        ),
    ]
    case = Case(
        "get_post_final_ln_dir(model)",
        lambda: fn(model),
        expected,
        TOLERANCES["get_post_final_ln_dir"],
        mistakes,
    )
    return run_cases("get_post_final_ln_dir", [case])


def _ln_cases(model: BracketTransformer) -> list[tuple[str, int | None]]:
    """LayerNorms and positions whose least-squares fit is unique.

    Nothing in layer 0: the input of its ``ln1`` is token + positional embedding,
    which spans fewer than d_model dimensions, and its ``ln2`` input at one position
    is nearly as degenerate, so the coefficients are not unique and two correct
    solvers disagree.
    """
    last = model.cfg.n_layers - 1
    return [
        ("ln_final", 0),
        ("ln_final", None),
        (ln_name(last), 1),
        (ln_name(min(1, last)), None),
        (ln_name(last, "ln2"), 0),
    ]


def check_get_ln_fit(fn: LearnerFn, model: BracketTransformer, data: CourseData) -> CheckResult:
    """LayerNorm fits for several LayerNorms, at one position and pooled: coef, intercept, r^2."""
    cases = (_ln_fit_case(fn, model, data, name, pos) for name, pos in _ln_cases(model))
    return run_cases("get_ln_fit", cases)


def _ln_fit_case(
    fn: LearnerFn, model: BracketTransformer, data: CourseData, name: str, seq_pos: int | None
) -> Case:
    tokens = tokens_of(data)
    module = model.get_submodule(name)
    fit = course_ln_fit(model, tokens, name, seq_pos)
    expr = (
        "model.ln_final"
        if name == "ln_final"
        else "model.blocks[{}].{}".format(*name.split(".")[1:])
    )
    return Case(
        f"get_ln_fit(model, data, {expr}, seq_pos={seq_pos})",
        lambda: fn(model, data, module, seq_pos),
        _fit_parts(fit.regression, fit.r2),
        TOLERANCES["get_ln_fit"],
        _ln_fit_mistakes(model, tokens, fit),
        convert=_learner_fit,
        parts=("coef_", "intercept_", "r2"),
    )


def _fit_parts(regression: LinearRegression, r2: object) -> Parts:
    coef = np.asarray(regression.coef_, dtype=np.float64)
    # sklearn stores intercept_ = 0.0 (a scalar) without an intercept: give it coef's rows
    intercept = np.broadcast_to(np.asarray(regression.intercept_, dtype=np.float64), coef.shape[:1])
    return to_tensor(coef), to_tensor(np.array(intercept)), to_tensor(np.asarray(r2, dtype=float))


def _learner_fit(raw: object) -> Parts:
    ok = isinstance(raw, tuple | list) and len(raw) == 2 and hasattr(raw[0], "coef_")
    if not ok:
        raise AnswerError(
            f"returned {article(type(raw).__name__)}; expected a tuple (fitted "
            "LinearRegression, r2)"
        )
    assert isinstance(raw, tuple | list)
    return _fit_parts(raw[0], raw[1])


def _ln_fit_mistakes(model: BracketTransformer, tokens: Tensor, fit: LayerNormFit) -> list[Mistake]:
    name, seq_pos = fit.layernorm, fit.position
    ln = cast(LayerNorm, model.get_submodule(name))
    w, b = ln.w.detach().double(), ln.b.detach().double()
    coef, intercept, r2 = _fit_parts(fit.regression, fit.r2)

    def no_intercept() -> Parts:
        x, y = _ln_arrays(model, tokens, name, seq_pos)
        reg = LinearRegression(fit_intercept=False).fit(x, y)
        return _fit_parts(reg, reg.score(x, y))

    mistakes = [
        looks_like(
            "your fit has no intercept: use LinearRegression() with its default "
            "fit_intercept=True (a LayerNorm is affine, not linear, in its input)",
            no_intercept,
        ),
        looks_like(
            "you fitted the LayerNorm's output before its affine map (without * w + b); fit "
            f"the activation {name}.hook_normalized, which includes the learned weight and bias",
            lambda: (coef / w[:, None], (intercept - b) / w, r2),
        ),
    ]
    for other in (None, 0, 1):
        if other != seq_pos:
            mistakes.append(
                looks_like(
                    _position_text(seq_pos, other),
                    lambda other=other: _fit_parts(  # type: ignore[misc]
                        *_fit_tuple(course_ln_fit(model, tokens, name, other))
                    ),
                )
            )
    return mistakes


def _fit_tuple(fit: LayerNormFit) -> tuple[LinearRegression, float]:
    return fit.regression, fit.r2


def _position_text(wanted: int | None, got: int | None) -> str:
    if got is None:
        return f"your fit pools every position; with seq_pos={wanted} fit x[:, {wanted}] only"
    if wanted is None:
        return (
            f"your fit uses position {got} only; with seq_pos=None pool all positions "
            "(flatten the batch and position dimensions)"
        )
    return f"your fit is at position {got}; use seq_pos={wanted}"


def _ln_arrays(
    model: BracketTransformer, tokens: Tensor, name: str, seq_pos: int | None
) -> tuple[np.ndarray, np.ndarray]:
    before, after = layernorm_hook_names(model, name)
    acts = get_activations(model, tokens, [before, after])
    x, y = acts[before], acts[after]
    if seq_pos is None:
        return x.flatten(0, 1).numpy(), y.flatten(0, 1).numpy()
    return x[:, seq_pos].numpy(), y[:, seq_pos].numpy()


def check_get_pre_final_ln_dir(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """The unbalanced direction before the final LayerNorm, at position 0."""
    tokens = tokens_of(data)
    post = course.get_post_final_ln_dir(model)
    fit_at = cache(lambda pos: course_ln_fit(model, tokens, "ln_final", pos))
    mistakes = [
        looks_like(
            "you returned the post-LN direction; pull it back through the linear fit of "
            "ln_final at position 0: fit.coef_.T @ (W_U[:, 0] - W_U[:, 1])",
            lambda: post,
        ),
        looks_like(
            "you multiplied by coef_ instead of its transpose: the fit maps x to coef_ @ x, "
            "so a direction d after the LayerNorm pulls back to coef_.T @ d",
            lambda: fit_at(0).coef @ post,
        ),
        looks_like(
            "your fit of ln_final pools every position; fit position 0 only (seq_pos=0), "
            "where the class is read",
            lambda: fit_at(None).pull_back(post),
        ),
        looks_like(
            "your fit of ln_final is at position 1; fit position 0 (seq_pos=0), where the "
            "class is read",
            lambda: fit_at(1).pull_back(post),
        ),
    ]
    case = Case(
        "get_pre_final_ln_dir(model, data)",
        lambda: fn(model, data),
        course.get_pre_final_ln_dir(model, data),
        TOLERANCES["get_pre_final_ln_dir"],
        mistakes,
    )
    return run_cases("get_pre_final_ln_dir", [case])


__all__ = [
    "TOLERANCES",
    "check_get_activations",
    "check_get_ln_fit",
    "check_get_post_final_ln_dir",
    "check_get_pre_final_ln_dir",
]
