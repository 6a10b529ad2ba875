"""Checks for the MLP and tally exercises: neuron outputs, projections, embeddings, cosines."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import torch
from torch import Tensor

from bracketlens.activations import get_activations
from bracketlens.arena import course
from bracketlens.arena._compare import (
    ACTIVATION_TOL,
    DIRECTION_TOL,
    WEIGHT_TOL,
    Case,
    CheckResult,
    Mistake,
    Parts,
    Tolerance,
    looks_like,
    run_cases,
)
from bracketlens.arena.datasets import CourseData, SimpleTokenizer, tokens_of
from bracketlens.data.tokens import VOCAB
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

LearnerFn = Callable[..., Any]

AVG_COS_SAMPLES = 1000  # the course's default n_samples
AVG_COS_SIGMAS = 6.0  # a right answer fails about once in 10^9 runs
AVG_COS_DIMS = (56, 16)


def avg_cos_tolerance(d_model: int, n_samples: int, scale: float = 1.0) -> Tolerance:
    """Sampling error allowed for a mean of ``n_samples`` squared cosines in ``d_model`` dims.

    For a uniformly random unit vector, cos^2 with a fixed one has mean ``1/d`` and
    variance ``3/(d(d+2)) - 1/d^2``; the mean of ``n`` of them has that over ``n``.
    """
    var = 3 / (d_model * (d_model + 2)) - 1 / d_model**2
    return Tolerance(atol=AVG_COS_SIGMAS * scale * math.sqrt(var / n_samples), rtol=0.0)


TOLERANCES: dict[str, Tolerance] = {
    "get_out_by_neuron": ACTIVATION_TOL,
    "get_out_by_neuron_in_20_dir": DIRECTION_TOL,
    "get_out_by_neuron_in_20_dir_less_memory": DIRECTION_TOL,
    "embedding": WEIGHT_TOL,
    "cos_sim_with_MLP_weights": ACTIVATION_TOL,
    # statistical: the bound for len(v) = 56; other lengths get their own
    "avg_squared_cos_sim": avg_cos_tolerance(56, AVG_COS_SAMPLES),
}


def _activation(model: BracketTransformer, tokens: Tensor, name: str) -> Tensor:
    return get_activations(model, tokens, name)[name]


def check_get_out_by_neuron(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """Each neuron's output vector: all positions for one layer, one position for every layer."""
    n_layers = model.cfg.n_layers
    calls = [(0, None), *[(layer, 1) for layer in range(n_layers)], (n_layers - 1, 0)]
    tokens = tokens_of(data)
    post = cache(lambda layer: _activation(model, tokens, act_name("post", layer)))

    def cases() -> Iterator[Case]:
        for layer, seq in calls:
            full = course.get_out_by_neuron(model, data, layer)
            yield Case(
                f"get_out_by_neuron(model, data, {layer}, seq={seq})",
                lambda layer=layer, seq=seq: fn(model, data, layer, seq),  # type: ignore[misc]
                full if seq is None else full[:, seq],
                TOLERANCES["get_out_by_neuron"],
                _neuron_mistakes(model, tokens, layer, seq, full, post),
            )

    return run_cases("get_out_by_neuron", cases())


def _neuron_mistakes(
    model: BracketTransformer,
    tokens: Tensor,
    layer: int,
    seq: int | None,
    full: Tensor,
    post: Callable[[int], Tensor],
) -> list[Mistake]:
    def at(x: Tensor) -> Tensor:
        return x if seq is None else x[:, seq]

    w_out, w_in = model.W_out[layer].detach(), model.W_in[layer].detach()
    pre = act_name("pre", layer)
    mistakes: list[Mistake] = [
        looks_like(
            "you used the pre-activations (hook_pre); a neuron writes its post-ReLU "
            "activation (hook_post) times its row of W_out",
            lambda: at(_activation(model, tokens, pre)).unsqueeze(-1) * w_out,
        ),
        looks_like(
            "you used W_in; neuron i writes post[..., i] * W_out[i, :]",
            lambda: at(post(layer)).unsqueeze(-1) * w_in.T,
        ),
    ]
    return mistakes + _neuron_index_mistakes(model, layer, seq, full, post)


def _neuron_index_mistakes(
    model: BracketTransformer,
    layer: int,
    seq: int | None,
    full: Tensor,
    post: Callable[[int], Tensor],
) -> list[Mistake]:
    """The right computation at another position or for another layer."""
    mistakes: list[Mistake] = []
    if seq is not None:
        mistakes.append(
            looks_like(
                f"you returned every position; with seq={seq} return that position only "
                "(out[:, seq])",
                lambda: full,
            )
        )
        mistakes += [
            looks_like(
                f"your result matches position {p}; index position seq={seq}",
                lambda p=p: full[:, p],  # type: ignore[misc]
            )
            for p in range(min(full.shape[1], 4))
            if p != seq
        ]

    def other_layer(other: int) -> Tensor:
        act = post(other) if seq is None else post(other)[:, seq]
        return act.unsqueeze(-1) * model.W_out[other].detach()

    mistakes += [
        looks_like(
            f"your result is layer {other}'s neurons; use blocks.{layer}.mlp.hook_post and "
            f"W_out[{layer}]",
            lambda other=other: other_layer(other),  # type: ignore[misc]
        )
        for other in range(model.cfg.n_layers)
        if other != layer
    ]
    return mistakes


def check_get_out_by_neuron_in_20_dir(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """Each neuron's output at position 1 on the pre-2.0 direction, for every layer."""
    return _check_in_20_dir("get_out_by_neuron_in_20_dir", fn, model, data)


def check_get_out_by_neuron_in_20_dir_less_memory(
    fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    """As :func:`check_get_out_by_neuron_in_20_dir` (the values; memory is not measured)."""
    return _check_in_20_dir("get_out_by_neuron_in_20_dir_less_memory", fn, model, data)


def _check_in_20_dir(
    name: str, fn: LearnerFn, model: BracketTransformer, data: CourseData
) -> CheckResult:
    ours = getattr(course, name)
    directions = (course.get_pre_20_dir(model, data), course.get_pre_final_ln_dir(model, data))

    def cases() -> Iterator[Case]:
        for layer in range(model.cfg.n_layers):
            yield Case(
                f"{name}(model, data, {layer})",
                lambda layer=layer: fn(model, data, layer),  # type: ignore[misc]
                ours(model, data, layer),
                TOLERANCES[name],
                _in_20_dir_mistakes(model, tokens_of(data), layer, *directions),
            )

    return run_cases(name, cases())


def _in_20_dir_mistakes(
    model: BracketTransformer, tokens: Tensor, layer: int, direction: Tensor, final: Tensor
) -> list[Mistake]:
    pos = course.READ_POSITION

    def projected(hook: str, p: int, d: Tensor) -> Tensor:
        act = _activation(model, tokens, act_name(hook, layer))[:, p]
        return act * (model.W_out[layer].detach() @ d)

    return [
        looks_like(
            "you projected on the pre-final-LN direction; project on the pre-2.0 direction "
            "(get_pre_20_dir)",
            lambda: projected("post", pos, final),
        ),
        looks_like(
            "you used the pre-activations (hook_pre); use the post-ReLU activations",
            lambda: projected("pre", pos, direction),
        ),
        *[
            looks_like(
                f"your values match position {p}; project the neurons' output at position "
                f"{pos}, the position head 2.0 reads",
                lambda p=p: projected("post", p, direction),  # type: ignore[misc]
            )
            for p in range(min(tokens.shape[1], 4))
            if p != pos
        ],
    ]


def check_embedding(
    fn: LearnerFn, model: BracketTransformer, tokenizer: SimpleTokenizer
) -> CheckResult:
    """The token embedding of ``(`` and of ``)``."""
    w_e = model.W_E.detach()

    def cases() -> Iterator[Case]:
        for char in ("(", ")"):
            mistakes = [
                looks_like(
                    f"you returned W_E[{i}], the embedding of {VOCAB[i]!r}; use "
                    f"W_E[tokenizer.t_to_i[{char!r}]]",
                    lambda i=i: w_e[i],  # type: ignore[misc]
                )
                for i in range(len(w_e))
                if i != tokenizer.t_to_i[char]
            ]
            yield Case(
                f"embedding(model, tokenizer, {char!r})",
                lambda char=char: fn(model, tokenizer, char),  # type: ignore[misc]
                course.embedding(model, tokenizer, char),
                TOLERANCES["embedding"],
                mistakes,
            )

    return run_cases("embedding", cases())


def check_cos_sim_with_MLP_weights(
    fn: LearnerFn, model: BracketTransformer, v: Tensor
) -> CheckResult:
    """Cosine of ``v`` with each column of ``W_in`` of every layer."""
    v = v.detach().cpu().float()

    def cases() -> Iterator[Case]:
        for layer in range(model.cfg.n_layers):
            cos = course.cos_sim_with_MLP_weights(model, v, layer)
            yield Case(
                f"cos_sim_with_MLP_weights(model, v, {layer})",
                lambda layer=layer: fn(model, v, layer),  # type: ignore[misc]
                cos,
                TOLERANCES["cos_sim_with_MLP_weights"],
                _cosine_mistakes(v, model.W_in[layer].detach(), cos),
            )

    return run_cases("cos_sim_with_MLP_weights", cases())


def _cosine_mistakes(v: Tensor, w_in: Tensor, cos: Tensor) -> list[Mistake]:
    v_unit, w_unit = v / v.norm(), w_in / w_in.norm(dim=0)
    return [
        looks_like(
            "you used the rows of W_in; a neuron's input direction is a column W_in[:, i]",
            lambda: (w_in / w_in.norm(dim=1, keepdim=True)) @ v_unit,
        ),
        looks_like(
            "you returned dot products; divide by the norm of v and of each column",
            lambda: v @ w_in,
        ),
        looks_like(
            "you did not normalise the columns of W_in (divide by W_in.norm(dim=0))",
            lambda: v_unit @ w_in,
        ),
        looks_like("you did not normalise v (divide by v.norm())", lambda: v @ w_unit),
        looks_like(
            "you returned the squared cosines; return the cosines themselves", lambda: cos**2
        ),
    ]


def check_avg_squared_cos_sim(fn: LearnerFn) -> CheckResult:
    """The mean squared cosine with random vectors against its exact value ``1/d_model``.

    The learner's answer is random, so the tolerance is :data:`AVG_COS_SIGMAS`
    standard deviations of the sampling error with :data:`AVG_COS_SAMPLES` samples.
    """
    gen = torch.Generator().manual_seed(0)
    n = AVG_COS_SAMPLES

    def cases() -> Iterator[Case]:
        for d in AVG_COS_DIMS:
            v = 3 * torch.randn(d, generator=gen)  # not unit length: the learner must normalise
            yield Case(
                f"avg_squared_cos_sim(v, n_samples={n}) with len(v) = {d}",
                lambda v=v: fn(v, n_samples=n),  # type: ignore[misc]
                torch.tensor(1 / d),
                avg_cos_tolerance(d, n),
                _avg_cos_mistakes(d, n, float(v.norm() ** 2)),
            )

    return run_cases("avg_squared_cos_sim", cases())


def _avg_cos_mistakes(d: int, n: int, norm2: float) -> list[Mistake]:
    """What each mistake gives in expectation, with that estimate's own sampling error."""
    sigmas = AVG_COS_SIGMAS
    return [
        looks_like(
            "you averaged the cosine, not its square",
            lambda: torch.tensor(0.0),
            Tolerance(sigmas / math.sqrt(d * n), 0.0),  # the mean cosine has variance 1/(d n)
        ),
        looks_like(
            "you did not normalise the random vectors (divide each by its norm)",
            lambda: torch.tensor(1.0),
            Tolerance(sigmas * math.sqrt(2 / n), 0.0),  # (v.x)^2 is chi-squared(1): variance 2
        ),
        looks_like(
            "you did not normalise v (divide it by v.norm())",
            lambda: torch.tensor(norm2 / d),
            avg_cos_tolerance(d, n, scale=norm2),
        ),
        looks_like(
            "you summed over the samples; take the mean",
            lambda: torch.tensor(n / d),
            avg_cos_tolerance(d, n, scale=n),
        ),
        _per_sample(n),
    ]


def _per_sample(n: int) -> Mistake:
    def diagnose(got: Parts, tol: Tolerance) -> str | None:
        if got[0].numel() == n:
            return "you returned one value per sample; return their mean as a float"
        return None

    return diagnose


__all__ = [
    "AVG_COS_SAMPLES",
    "TOLERANCES",
    "avg_cos_tolerance",
    "check_avg_squared_cos_sim",
    "check_cos_sim_with_MLP_weights",
    "check_embedding",
    "check_get_out_by_neuron",
    "check_get_out_by_neuron_in_20_dir",
    "check_get_out_by_neuron_in_20_dir_less_memory",
]
