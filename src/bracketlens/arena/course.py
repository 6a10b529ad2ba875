"""The course's analysis functions under their course names: thin wrappers over the library.

Every function here keeps the name, arguments and return convention of the ARENA
"balanced bracket classifier" exercises and delegates to the general API, which
takes any layer, head and position. The course model's roles (head 2.0 reads
position 1; the classification is read at position 0) live only here, as the
constants below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from sklearn.linear_model import LinearRegression
from torch import Tensor, nn
from transformer_lens import ActivationCache
from transformer_lens.hook_points import HookPoint

from bracketlens import activations
from bracketlens.arena._sklearn_fit import course_ln_fit
from bracketlens.arena.datasets import CourseData, SimpleTokenizer, tokens_of
from bracketlens.attribution.components import out_by_components
from bracketlens.attribution.directions import (
    unbalanced_direction_post_ln,
    unbalanced_direction_pre_ln,
)
from bracketlens.attribution.neurons import out_by_neuron, out_by_neuron_in_direction
from bracketlens.circuits.heads import (
    attention_patterns,
    head_input_direction,
    ov_matrix,
    queries_and_keys,
)
from bracketlens.circuits.tally import (
    mean_squared_cosine_random,
    mlp_input_cosines,
    token_embedding,
)
from bracketlens.errors import BracketLensError
from bracketlens.model.layers import IGNORE
from bracketlens.model.transformer import BracketTransformer
from bracketlens.weights.resolve import load_model

CLASSIFY_POSITION = 0  # the course reads the class at [start]
ELEVATION_LAYER, ELEVATION_HEAD = 2, 0  # the course's head 2.0
READ_POSITION = 1  # head 2.0 reads the residual stream at position 1


def get_activations(
    model: BracketTransformer, toks: Int[Tensor, "batch seq"], names: str | Sequence[str]
) -> Tensor | ActivationCache:
    """Wraps :func:`bracketlens.activations.get_activations`: a tensor for one name, else a cache."""
    acts = activations.get_activations(model, toks, names)
    if isinstance(names, str):
        return acts[names]
    return ActivationCache(acts, model)


def layernorm_name(model: BracketTransformer, layernorm: nn.Module | str) -> str:
    """The name of a LayerNorm module of ``model`` (``"ln_final"``, ``"blocks.2.ln1"``...)."""
    if isinstance(layernorm, str):
        name: str | None = layernorm
    else:
        name = next((n for n, m in model.named_modules() if m is layernorm), None)
    if name is None:
        raise BracketLensError(
            "this LayerNorm is not a module of the model; pass model.ln_final or "
            "model.blocks[L].ln1 / model.blocks[L].ln2 of the same model"
        )
    activations.layernorm_hook_names(model, name)  # raises for anything but a LayerNorm
    return name


def get_ln_fit(
    model: BracketTransformer,
    data: CourseData,
    layernorm: nn.Module | str,
    seq_pos: int | None = None,
) -> tuple[LinearRegression, float]:
    """Wraps :func:`bracketlens.arena._sklearn_fit.course_ln_fit` (the course's sklearn fit)."""
    fit = course_ln_fit(model, tokens_of(data), layernorm_name(model, layernorm), seq_pos)
    return fit.regression, fit.r2


def get_post_final_ln_dir(model: BracketTransformer) -> Float[Tensor, " d_model"]:
    """Wraps :func:`bracketlens.attribution.directions.unbalanced_direction_post_ln`."""
    return unbalanced_direction_post_ln(model).detach()


def get_pre_final_ln_dir(model: BracketTransformer, data: CourseData) -> Float[Tensor, " d_model"]:
    """Wraps :func:`get_ln_fit` (``ln_final``, position 0) and :func:`get_post_final_ln_dir`.

    The fit's coefficients pull the post-LN direction back, as the course builds it:
    the same direction as :func:`bracketlens.attribution.directions.unbalanced_direction_pre_ln`
    up to the sklearn fit's float32 rounding (about 1e-3 here), so that it equals what a
    learner computes from :func:`get_ln_fit` by hand, as the course does.
    """
    regression, _ = get_ln_fit(model, data, model.ln_final, seq_pos=0)
    coef = torch.as_tensor(regression.coef_, dtype=torch.float32)
    return (coef.T @ get_post_final_ln_dir(model)).detach()


def get_out_by_components(
    model: BracketTransformer, data: CourseData
) -> Float[Tensor, "component batch seq d_model"]:
    """Wraps :func:`bracketlens.attribution.components.out_by_components` (its ``values``)."""
    return out_by_components(model, tokens_of(data)).values


def get_attn_probs(
    model: BracketTransformer, data: CourseData, layer: int, head: int
) -> Float[Tensor, "batch seqQ seqK"]:
    """Wraps :func:`bracketlens.circuits.heads.attention_patterns`."""
    return attention_patterns(model, tokens_of(data), layer, head)


def get_WOV(model: BracketTransformer, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """Wraps :func:`bracketlens.circuits.heads.ov_matrix`."""
    return ov_matrix(model, layer, head)


def get_pre_20_dir(model: BracketTransformer, data: CourseData) -> Float[Tensor, " d_model"]:
    """Wraps :func:`bracketlens.circuits.heads.head_input_direction` for head 2.0 at position 1."""
    tokens = tokens_of(data)
    unbalanced = unbalanced_direction_pre_ln(model, tokens)
    return head_input_direction(
        model, tokens, ELEVATION_LAYER, ELEVATION_HEAD, READ_POSITION, unbalanced
    )


def get_out_by_neuron(
    model: BracketTransformer, data: CourseData, layer: int, seq: int | None = None
) -> Float[Tensor, "batch *seq neuron d_model"]:
    """Wraps :func:`bracketlens.attribution.neurons.out_by_neuron`."""
    return out_by_neuron(model, tokens_of(data), layer, position=seq)


def get_out_by_neuron_in_20_dir(
    model: BracketTransformer, data: CourseData, layer: int
) -> Float[Tensor, "batch neuron"]:
    """Wraps :func:`bracketlens.attribution.neurons.out_by_neuron` at position 1, projected on the pre-2.0 direction."""
    return out_by_neuron(model, tokens_of(data), layer, READ_POSITION) @ get_pre_20_dir(model, data)


def get_out_by_neuron_in_20_dir_less_memory(
    model: BracketTransformer, data: CourseData, layer: int
) -> Float[Tensor, "batch neuron"]:
    """Wraps :func:`bracketlens.attribution.neurons.out_by_neuron_in_direction` (pre-2.0 direction, position 1)."""
    direction = get_pre_20_dir(model, data)
    return out_by_neuron_in_direction(model, tokens_of(data), layer, direction, READ_POSITION)


def get_q_and_k_for_given_input(
    model: BracketTransformer, tokenizer: SimpleTokenizer, parens: str, layer: int
) -> tuple[Float[Tensor, "seq head d_head"], Float[Tensor, "seq head d_head"]]:
    """Wraps :func:`bracketlens.circuits.heads.queries_and_keys` for one paren string."""
    return queries_and_keys(model, tokenizer.tokenize(parens), layer)


def embedding(
    model: BracketTransformer, tokenizer: SimpleTokenizer, char: str
) -> Float[Tensor, " d_model"]:
    """Wraps :func:`bracketlens.circuits.tally.token_embedding` (the tokenizer is the course's, unused)."""
    return token_embedding(model, char)


def cos_sim_with_MLP_weights(
    model: BracketTransformer, v: Float[Tensor, " d_model"], layer: int
) -> Float[Tensor, " d_mlp"]:
    """Wraps :func:`bracketlens.circuits.tally.mlp_input_cosines`."""
    return mlp_input_cosines(model, v, layer)


def avg_squared_cos_sim(v: Float[Tensor, " d_model"], n_samples: int = 1000) -> float:
    """Wraps :func:`bracketlens.circuits.tally.mean_squared_cosine_random`."""
    return mean_squared_cosine_random(v, n_samples)


def add_perma_hooks_to_mask_pad_tokens(
    model: BracketTransformer, pad_token: int
) -> BracketTransformer:
    """Add the course's permanent pad-masking hooks (once); returns the model.

    Our forward already masks pad keys before ``hook_attn_scores``, so these hooks
    change no number; they exist so that a course notebook runs unchanged and so
    that ``model.reset_hooks(including_permanent=True)`` behaves as it expects.
    """
    tokens_hook = model.hook_dict["hook_tokens"]
    if any(getattr(h.user_hook, "_bracketlens_pad_mask", False) for h in tokens_hook.fwd_hooks):
        return model

    # TransformerLens calls hooks as hook(tensor, hook=hook_point)
    def cache_pad_mask(tensor: Tensor, *, hook: HookPoint) -> None:
        hook.ctx["padding_tokens_mask"] = (tensor == pad_token)[:, None, None, :]

    def mask_pad_scores(tensor: Tensor, *, hook: HookPoint) -> Tensor:
        return tensor.masked_fill(tokens_hook.ctx["padding_tokens_mask"], IGNORE)

    cache_pad_mask._bracketlens_pad_mask = True  # type: ignore[attr-defined]
    tokens_hook.add_perma_hook(cache_pad_mask)
    for name, hook_point in model.hook_dict.items():
        if name.endswith("attn.hook_attn_scores"):
            hook_point.add_perma_hook(mask_pad_scores)
    return model


__all__ = [
    "CLASSIFY_POSITION",
    "ELEVATION_HEAD",
    "ELEVATION_LAYER",
    "READ_POSITION",
    "add_perma_hooks_to_mask_pad_tokens",
    "avg_squared_cos_sim",
    "cos_sim_with_MLP_weights",
    "embedding",
    "get_WOV",
    "get_activations",
    "get_attn_probs",
    "get_ln_fit",
    "get_out_by_components",
    "get_out_by_neuron",
    "get_out_by_neuron_in_20_dir",
    "get_out_by_neuron_in_20_dir_less_memory",
    "get_post_final_ln_dir",
    "get_pre_20_dir",
    "get_pre_final_ln_dir",
    "get_q_and_k_for_given_input",
    "layernorm_name",
    "load_model",
]
