"""The negative head: where it looks, and what feeds it.

Reading right to left, a string fails the negative test where some suffix has
more ``(`` than ``)``. If a head detects that, its attention from position 0
should concentrate on those positions, beyond what uniform attention over the
parens would put there (:func:`negative_head_attention`). What it reads there
comes from the components before it (:func:`negative_feeders`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.activations import layernorm_hook_names, run_and_reduce
from bracketlens.attribution.components import (
    ComponentStack,
    centre_on_balanced,
    component_labels,
)
from bracketlens.attribution.directions import unbalanced_direction_pre_ln
from bracketlens.attribution.layernorm import LayerNormFit
from bracketlens.circuits.heads import attention_patterns, check_head, ov_matrix
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import CLOSE, OPEN
from bracketlens.data.truth import FailureGroup
from bracketlens.engine.moments import FitMoments
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import DEFAULT_BATCH, iter_batches
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, bootstrap


def wrong_way_positions(tokens: Int[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """Paren positions whose suffix (from there to the end) has more '(' than ')'."""
    step = (tokens == OPEN).to(torch.int32) - (tokens == CLOSE).to(torch.int32)
    suffix = step.flip(-1).cumsum(-1).flip(-1)
    return (suffix > 0) & (step != 0)


@dataclass(frozen=True)
class NegativeAttention:
    """Attention of one head from position 0 on strings that go negative.

    Attributes:
        head: ``"L.H"``.
        on_wrong_way: attention mass on the wrong-way positions, per string (mean, CI).
        uniform_baseline: the share of parens that are wrong-way positions (what
            uniform attention over the parens would give).
    """

    head: str
    on_wrong_way: Estimate
    uniform_baseline: Estimate

    @property
    def lift(self) -> float:
        """How many times more attention the wrong-way positions get than uniform."""
        return self.on_wrong_way.value / max(self.uniform_baseline.value, 1e-12)


def negative_head_attention(
    model: BracketTransformer, data: BracketDataset, layer: int, head: int
) -> NegativeAttention:
    """Attention from position 0 to wrong-way positions, on the strings that go negative."""
    negative = data[data.failure_types.negative]
    if len(negative) == 0:
        raise BracketLensError("no string of the sample goes negative; use a larger sample")
    row = attention_patterns(model, negative.tokens, layer, head)[:, 0]  # [batch, key]
    wrong = wrong_way_positions(negative.tokens)
    n_parens = (negative.tokens >= OPEN).sum(-1).clamp(min=1)
    return NegativeAttention(
        head=f"{layer}.{head}",
        on_wrong_way=bootstrap((row * wrong).sum(-1).numpy()),
        uniform_baseline=bootstrap((wrong.sum(-1) / n_parens).numpy()),
    )


@dataclass(frozen=True)
class NegativeFeeders:
    """What each earlier component feeds the negative head, in the unbalanced direction.

    The head's output at position 0 is ``sum_k A[0, k] OV(LN1(resid_k))``. With a
    linear fit of its layer's ``ln1`` (pooled over the paren positions: the head reads
    many), each component's share is ``sum_k A[0, k] (component_k . d)`` with ``d``
    the unbalanced direction pulled back through the fit and the head's OV matrix:
    the pre-2.0 analysis of the course, summed over the positions the head reads.

    Attributes:
        head: ``"L.H"``.
        direction: the head's input direction ``d`` in the residual stream.
        ln_fit_r2: r^2 of the pooled ``ln1`` fit over the paren positions.
        components: ``[component, batch]``, centred on balanced strings.
        from_wrong_way: ``[component, batch]``, the part read from wrong-way positions
            (uncentred; 0 for strings that never go negative).
    """

    head: str
    direction: Float[Tensor, " d_model"]
    ln_fit_r2: float
    components: ComponentStack
    from_wrong_way: Float[Tensor, "component batch"]

    def group_medians(self, groups: Int[Tensor, " batch"]) -> dict[str, dict[str, float]]:
        """Median contribution of each component per failure group: label -> group -> value."""
        out: dict[str, dict[str, float]] = {}
        for i, label in enumerate(self.components.labels):
            values = self.components.values[i]
            out[label] = {
                g.label: float(values[groups == g].median())
                for g in FailureGroup
                if (groups == g).any()
            }
        return out


def negative_feeders(
    model: BracketTransformer,
    data: BracketDataset,
    layer: int,
    head: int,
    output_direction: Float[Tensor, " d_model"] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> NegativeFeeders:
    """The components before ``layer`` that feed head ``layer.head``, per string.

    Args:
        output_direction: the direction the head's output is read in; by default the
            unbalanced direction before the final LayerNorm, fitted on ``data``.
    """
    check_head(model, layer, head)
    if not data.labels.any():
        raise BracketLensError("centring the feeders needs balanced strings in the sample")
    if output_direction is None:
        output_direction = unbalanced_direction_pre_ln(model, data.tokens)
    fit = _paren_position_fit(model, data.tokens, layer, batch_size)
    d = fit.pull_back(ov_matrix(model, layer, head) @ output_direction.detach().float())

    def along(act: Tensor) -> Tensor:
        return act @ d

    reducers: dict[str, list[Callable[[Tensor], Tensor]]] = {
        "hook_embed": [along],
        "hook_pos_embed": [along],
        f"blocks.{layer}.attn.hook_pattern": [lambda p: p[:, head, 0]],
    }
    for lyr in range(layer):
        reducers[f"blocks.{lyr}.attn.hook_result"] = [along]  # [batch, seq, head]
        reducers[f"blocks.{lyr}.hook_mlp_out"] = [along]
    acts = run_and_reduce(model, data.tokens, reducers, batch_size)
    per_position = [acts["hook_embed"][0] + acts["hook_pos_embed"][0]]
    for lyr in range(layer):
        per_position += [*acts[f"blocks.{lyr}.attn.hook_result"][0].unbind(-1)]
        per_position.append(acts[f"blocks.{lyr}.hook_mlp_out"][0])
    stacked = torch.stack(per_position)  # [component, batch, seq]
    row = acts[f"blocks.{layer}.attn.hook_pattern"][0]  # [batch, seq]
    through = (stacked * row).sum(-1)
    wrong = (stacked * row * wrong_way_positions(data.tokens)).sum(-1)
    labels = component_labels(model.cfg)[: 1 + layer * (model.cfg.n_heads + 1)]
    centred = centre_on_balanced(through, data.labels)
    return NegativeFeeders(
        head=f"{layer}.{head}",
        direction=d,
        ln_fit_r2=fit.r2,
        components=ComponentStack(centred, labels, torch.zeros(())),
        from_wrong_way=wrong,
    )


def _paren_position_fit(
    model: BracketTransformer, tokens: Int[Tensor, "batch seq"], layer: int, batch_size: int
) -> LayerNormFit:
    """Linear fit of ``blocks.{layer}.ln1`` over every paren position (no start, end, pad)."""
    moments = FitMoments(model.cfg.d_model, model.cfg.d_model)
    before, after = layernorm_hook_names(model, f"blocks.{layer}.ln1")
    state: dict[str, Tensor] = {}

    def keep_x(act: Tensor, hook: object) -> None:
        state["x"] = act

    def add(act: Tensor, hook: object) -> None:
        parens = state["tokens"] >= OPEN
        moments.add(state.pop("x")[parens], act[parens])

    with torch.no_grad(), model.hooks(fwd_hooks=[(before, keep_x), (after, add)]):
        for _, batch in iter_batches(tokens, batch_size):
            state["tokens"] = batch
            model(batch)
    return moments.fit(layernorm=f"blocks.{layer}.ln1", position=None)
