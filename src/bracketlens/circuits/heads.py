"""Per-head views: attention patterns, OV/QK matrices, and directions at a head's input."""

from __future__ import annotations

from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix

from bracketlens.activations import get_activations, run_and_reduce
from bracketlens.attribution.layernorm import LayerNormFit, fit_layernorm
from bracketlens.errors import BracketLensError
from bracketlens.model.checks import check_head
from bracketlens.model.names import act_name, ln_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def attention_patterns(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layer: int,
    head: int,
    batch_size: int = DEFAULT_BATCH,
) -> Float[Tensor, "batch seqQ seqK"]:
    """Attention probabilities of one head; each row sums to 1 over the non-pad keys."""
    check_head(model, layer, head)
    name = act_name("pattern", layer)
    out = run_and_reduce(model, tokens, {name: [lambda p: p[:, head]]}, batch_size)
    return out[name][0]


def mean_attention_row(
    patterns: Float[Tensor, "batch seqQ seqK"],
    query: int,
    mask: Bool[Tensor, " batch"] | None = None,
) -> Float[Tensor, " seqK"]:
    """Mean attention from ``query`` to every key over the strings in ``mask``."""
    rows = patterns[:, query] if mask is None else patterns[mask, query]
    if len(rows) == 0:
        raise BracketLensError("no strings selected for the mean attention")
    return rows.mean(0)


def ov_matrix(model: BracketTransformer, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """``W_V[layer, head] @ W_O[layer, head]``: what the head writes for what it reads."""
    check_head(model, layer, head)
    return (model.W_V[layer, head] @ model.W_O[layer, head]).detach()


def qk_matrix(model: BracketTransformer, layer: int, head: int) -> FactoredMatrix:
    """``W_Q @ W_K^T`` of one head, as a low-rank ``FactoredMatrix``."""
    check_head(model, layer, head)
    return FactoredMatrix(model.W_Q[layer, head].detach(), model.W_K[layer, head].detach().T)


def head_input_direction(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    layer: int,
    head: int,
    source_position: int,
    output_direction: Float[Tensor, " d_model"],
    fit: LayerNormFit | None = None,
) -> Float[Tensor, " d_model"]:
    """The residual direction at ``source_position`` that moves the head's output along ``output_direction``.

    Pulls ``output_direction`` back through the head's OV matrix and a linear fit
    of the layer's ``ln1`` at the source position (fitted on ``tokens`` unless
    given). For the course model, head 2.0 at position 1 with the pre-final-LN
    unbalanced direction is the course's "pre-2.0 direction".
    """
    if fit is None:
        fit = fit_layernorm(model, tokens, ln_name(layer), position=source_position)
    return fit.pull_back(ov_matrix(model, layer, head) @ output_direction)


def queries_and_keys(
    model: BracketTransformer, tokens: Int[Tensor, "1 seq"], layer: int
) -> tuple[Float[Tensor, "seq head d_head"], Float[Tensor, "seq head d_head"]]:
    """Queries and keys of every head of ``layer`` for one tokenized string."""
    check_head(model, layer)
    q, k = act_name("q", layer), act_name("k", layer)
    acts = get_activations(model, tokens, [q, k])
    return acts[q][0], acts[k][0]
