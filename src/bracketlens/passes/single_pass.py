"""The analysis's forward passes: each batch runs once, reduced on the spot.

The course computes each step with its own full ``run_with_cache``. Here a pass
hooks only the names the analysis reads and reduces each activation at once to
what later steps need. Two passes make up the analysis:

- :func:`observe`, which needs no role: the logits and ``ln_final``'s moments at
  position 0, the per-head ``z`` and MLP ``post`` at position 0 (every component
  output there is a linear map of these, so any direction fitted later can be
  applied afterwards), every head's attention row from query 0, and for each
  layer-0 head how evenly it spreads attention over the parens after each query;
- :func:`read_slices`, once the roles are known: ``z``/``post`` at the read
  position for the layers before the elevation head, and the moments of that
  layer's ``ln1`` at the read position.

:func:`gather` runs both sets of hooks in one pass, for callers that know the roles
already. LayerNorm inputs and outputs are kept only as float64 moments
(:class:`bracketlens.layernorm_fit.FitMoments`). Per string that is a few hundred
floats, written into buffers allocated once (per-batch copies fragment the heap).
Batches are grouped by length and their padding trimmed. The pooled layer-0 fit,
which the course takes over every position including padding, needs no
activation: layer 0's input is one of ``d_vocab x n_ctx`` rows, so its moments
come from counting (token, position) pairs (:func:`layer0_moments`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.components import ComponentStack, stack_components
from bracketlens.attribution.layernorm import LayerNormFit
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import OPEN
from bracketlens.errors import BracketLensError
from bracketlens.layernorm_fit import FitMoments, pooled
from bracketlens.model.checks import check_head
from bracketlens.model.names import act_name, ln_name
from bracketlens.model.predict import DEFAULT_BATCH, Evaluation
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes.base import HookList, Pass, layer0_moments, run_pass
from bracketlens.passes.feeders import FeederSums, feeder_hooks, new_sums

FLOAT32_BUDGET = 1 << 30  # bytes of float32 z/post slices before they are kept in float16


@dataclass(frozen=True)
class Observation:
    """The role-free pass over every string.

    Attributes:
        logits: ``[batch, 2]`` at position 0.
        z_0, post_0: per-head ``z`` ``[batch, layer, head, d_head]`` and MLP ``post``
            ``[batch, layer, d_mlp]`` at position 0.
        attention_from_0: ``[batch, layer, head, seqK]``, every head's row from query 0.
        suffix_uniformity: ``[batch, head, seqQ]``, for each layer-0 head and query
            position q, 1 - the total variation distance of its attention row from
            uniform attention over the parens from q on.
        final_ln: moments of ``ln_final`` at position 0, one per group.
        pooled_ln0: moments of layer 0's ``ln1`` over every position, padding included.
    """

    logits: Float[Tensor, "batch 2"]
    z_0: Float[Tensor, "batch layer head d_head"]
    post_0: Float[Tensor, "batch layer d_mlp"]
    attention_from_0: Float[Tensor, "batch layer head seqK"]
    suffix_uniformity: Float[Tensor, "batch head seqQ"]
    final_ln: list[FitMoments]
    pooled_ln0: FitMoments

    def final_fit(self, groups: list[int] | None = None) -> LayerNormFit:
        """``ln_final`` at position 0, fitted on the given groups (all by default)."""
        return pooled(self.final_ln, groups).fit(layernorm="ln_final", position=0)

    def pooled_ln0_fit(self) -> LayerNormFit:
        """Layer 0's ``ln1`` over all positions (the fit behind v_L and v_R)."""
        return self.pooled_ln0.fit(layernorm="blocks.0.ln1", position=None)

    def evaluation(self, data: BracketDataset) -> Evaluation:
        """Accuracy from the pass's logits (the same numbers as ``evaluate``)."""
        return Evaluation(
            p_balanced=self.logits.softmax(-1)[:, 1],
            labels=data.labels,
            groups=data.failure_groups,
            strings=data.strings,
        )

    def components_at_0(
        self,
        model: BracketTransformer,
        tokens: Int[Tensor, "batch seq"],
        direction: Float[Tensor, " d_model"],
    ) -> ComponentStack:
        """Every component's output at position 0 in ``direction`` (``components_in_direction``)."""
        embeds = _embeds_at(model, tokens[:, 0], 0)
        return project_slices(model, direction, embeds, self.z_0, self.post_0)


@dataclass(frozen=True)
class ReadSlices:
    """What the pass at the read position keeps, for the layers before ``layer``.

    Attributes:
        layer, position: the elevation head's layer and the position it reads.
        z_read, post_read: per-head ``z`` and MLP ``post`` at ``position``, layers
            before ``layer``.
        read_ln: moments of ``blocks.{layer}.ln1`` at ``position``, one per group.
        feeders: what feeds a second head (the negative head), if one was asked for.
    """

    layer: int
    position: int
    z_read: Float[Tensor, "batch layer head d_head"]
    post_read: Float[Tensor, "batch layer d_mlp"]
    read_ln: list[FitMoments]
    feeders: FeederSums | None = None

    def read_fit(self, groups: list[int] | None = None) -> LayerNormFit:
        """The elevation layer's ``ln1`` at the read position."""
        moments = pooled(self.read_ln, groups)
        return moments.fit(layernorm=ln_name(self.layer), position=self.position)

    def components_at_read(
        self,
        model: BracketTransformer,
        tokens: Int[Tensor, "batch seq"],
        direction: Float[Tensor, " d_model"],
    ) -> ComponentStack:
        """The components written before the elevation layer, at the read position."""
        embeds = _embeds_at(model, tokens[:, self.position], self.position)
        return project_slices(model, direction, embeds, self.z_read, self.post_read)

    def neuron_contributions(
        self, model: BracketTransformer, layer: int, direction: Float[Tensor, " d_model"]
    ) -> Float[Tensor, "batch neuron"]:
        """Each neuron of MLP ``layer`` at the read position, in ``direction``."""
        if not 0 <= layer < self.layer:
            raise BracketLensError(
                f"the pass kept MLPs 0..{self.layer - 1} at the read position, not MLP {layer}"
            )
        weights = model.W_out[layer].detach() @ direction.float()
        return self.post_read[:, layer].float() * weights


@dataclass(frozen=True)
class Gathered:
    """Both passes for one elevation head (``head`` of ``read.layer``), as :func:`gather` keeps."""

    observation: Observation
    read: ReadSlices
    head: int

    @property
    def layer(self) -> int:
        return self.read.layer

    @property
    def position(self) -> int:
        return self.read.position

    @property
    def attention_from_0(self) -> Float[Tensor, "batch seqK"]:
        """The elevation head's attention row from query 0."""
        return self.observation.attention_from_0[:, self.layer, self.head]

    def __getattr__(self, name: str) -> Any:
        # logits, z_0, final_fit, ... from the observation; z_read, read_fit, ... from the read
        for part in ("observation", "read"):
            source = self.__dict__.get(part)
            if source is not None and hasattr(source, name):
                return getattr(source, name)
        raise AttributeError(name)


def _observe_hooks(model: BracketTransformer, state: Pass, keep: Observation) -> HookList:
    nl = model.cfg.n_layers
    w_u, b_u = model.W_U.detach(), model.b_U.detach()

    def final(y: Tensor, hook: object) -> None:
        y0 = y[:, 0]
        state.per_group(keep.final_ln, state.batch.pop("x_final"), y0)
        keep.logits[state.idx] = y0 @ w_u + b_u

    def slices(lyr: int, buffer: Tensor) -> Callable[[Tensor, object], None]:
        def hook(act: Tensor, hook: object) -> None:
            buffer[state.idx, lyr] = state.kept(act[:, 0])

        return hook

    def pattern(lyr: int) -> Callable[[Tensor, object], None]:
        def hook(p: Tensor, hook: object) -> None:
            keep.attention_from_0[state.idx, lyr, :, : p.shape[-1]] = p[:, :, 0]
            if lyr == 0:
                width = p.shape[-1]
                keep.suffix_uniformity[state.idx, :, :width] = _uniformity(p, state.batch["tokens"])

        return hook

    hooks: HookList = [
        (act_name("resid_post", nl - 1), state.pending("x_final", 0)),
        ("ln_final.hook_normalized", final),
    ]
    for lyr in range(nl):
        hooks.append((act_name("z", lyr), slices(lyr, keep.z_0)))
        hooks.append((act_name("post", lyr), slices(lyr, keep.post_0)))
        hooks.append((act_name("pattern", lyr), pattern(lyr)))
    return hooks


def _uniformity(
    pattern: Float[Tensor, "batch head seqQ seqK"], tokens: Int[Tensor, "batch seq"]
) -> Float[Tensor, "batch head seqQ"]:
    """1 - TV distance of each query's row from uniform over the parens from that query on."""
    width = tokens.shape[1]
    pos = torch.arange(width)
    after = tokens[:, None, :] >= OPEN  # [batch, 1, key]
    mask = after & (pos[None, None, :] >= pos[None, :, None])  # [batch, query, key]
    uniform = mask.float() / mask.sum(-1, keepdim=True).clamp(min=1)
    return 1 - 0.5 * (pattern - uniform[:, None]).abs().sum(-1)


def _read_hooks(model: BracketTransformer, state: Pass, keep: ReadSlices) -> HookList:
    layer, position = keep.layer, keep.position

    ln1 = cast(torch.nn.Module, model.blocks[layer].ln1)

    def read_ln(x: Tensor, hook: object) -> None:
        # the read layer's LayerNorm at the read position alone: the pass may stop here
        x = x[:, position]
        state.per_group(keep.read_ln, x, ln1(x, hooked=False))

    def slices(lyr: int, buffer: Tensor) -> Callable[[Tensor, object], None]:
        def hook(act: Tensor, hook: object) -> None:
            buffer[state.idx, lyr] = state.kept(act[:, position])

        return hook

    hooks: HookList = [(act_name("resid_pre", layer), read_ln)]
    for lyr in range(layer):
        hooks.append((act_name("z", lyr), slices(lyr, keep.z_read)))
        hooks.append((act_name("post", lyr), slices(lyr, keep.post_read)))
    return hooks


def _keep_dtype(model: BracketTransformer, n: int, layers: int, given: torch.dtype | None):
    cfg = model.cfg
    per_string = layers * (cfg.n_heads * cfg.d_head + cfg.d_mlp)  # floats kept in z/post slices
    if given is not None:
        return given
    return torch.float16 if 4 * per_string * n > FLOAT32_BUDGET else torch.float32


def _new_observation(model: BracketTransformer, n: int, width: int, state: Pass) -> Observation:
    cfg = model.cfg
    nl, nh, dm = cfg.n_layers, cfg.n_heads, cfg.d_model
    return Observation(
        logits=torch.empty(n, cfg.d_vocab_out),
        z_0=torch.empty(n, nl, nh, cfg.d_head, dtype=state.dtype),
        post_0=torch.empty(n, nl, cfg.d_mlp, dtype=state.dtype),
        attention_from_0=torch.zeros(n, nl, nh, width),
        # past a batch's trimmed width a query is padding: its row (summing to 1 over the
        # real keys) is as far as can be from "uniform" over no paren at all
        suffix_uniformity=torch.full((n, nh, width), 0.5),
        final_ln=[FitMoments(dm, dm) for _ in range(state.n_groups)],
        pooled_ln0=FitMoments(dm, dm),
    )


def _new_read(model: BracketTransformer, n: int, layer: int, position: int, state: Pass):
    cfg = model.cfg
    return ReadSlices(
        layer=layer,
        position=position,
        z_read=torch.empty(n, layer, cfg.n_heads, cfg.d_head, dtype=state.dtype),
        post_read=torch.empty(n, layer, cfg.d_mlp, dtype=state.dtype),
        read_ln=[FitMoments(cfg.d_model, cfg.d_model) for _ in range(state.n_groups)],
    )


def observe(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    groups: Int[Tensor, " batch"] | None = None,
    batch_size: int = DEFAULT_BATCH,
    keep_dtype: torch.dtype | None = None,
) -> Observation:
    """The role-free pass over ``data`` (see the module docstring).

    Args:
        groups: optional non-negative group id per string (e.g. the two halves of a
            fit/check split): ``ln_final``'s moments are kept per group.
        keep_dtype: dtype of the kept ``z``/``post`` slices; float32, or float16 once
            float32 slices would pass :data:`FLOAT32_BUDGET` bytes.
    """
    n, width = data.tokens.shape
    dtype = _keep_dtype(model, n, model.cfg.n_layers, keep_dtype)
    state = Pass(n, groups, dtype)
    keep = _new_observation(model, n, width, state)
    layer0_moments(model, data.tokens, keep.pooled_ln0)
    # the last block's hooks read position 0 alone (class_only computes no other query
    # there), unless it is layer 0, whose uniformity reads every query
    hooks = _observe_hooks(model, state, keep)
    run_pass(model, data, state, hooks, batch_size, class_only=model.cfg.n_layers > 1)
    return keep


def read_slices(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    layer: int,
    position: int,
    groups: Int[Tensor, " batch"] | None = None,
    feeders_of: tuple[int, int] | None = None,
    batch_size: int = DEFAULT_BATCH,
    keep_dtype: torch.dtype | None = None,
) -> ReadSlices:
    """The pass at the read ``position`` of an elevation head in ``layer``.

    Args:
        feeders_of: ``(layer, head)`` of a second head whose feeders the same pass
            gathers (:class:`bracketlens.passes.feeders.FeederSums`).
    """
    check_head(model, layer)
    n, width = data.tokens.shape
    if not 0 < position < width:
        raise BracketLensError(f"read position {position} is outside these {width}-token strings")
    state = Pass(n, groups, _keep_dtype(model, n, layer, keep_dtype))
    keep = _new_read(model, n, layer, position, state)
    hooks = _read_hooks(model, state, keep)
    if feeders_of is not None:
        check_head(model, *feeders_of)
        keep = replace(keep, feeders=new_sums(model, n, *feeders_of))
        hooks = _read_hooks(model, state, keep) + feeder_hooks(model, state, keep.feeders)
    # its hooks sit at the read layer's input or earlier (where the pass can stop), or
    # the feeders' read position 0
    stop = None if feeders_of is not None else layer
    run_pass(
        model, data, state, hooks, batch_size, position + 1, class_only=True, stop_at_layer=stop
    )
    return keep


def gather(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    layer: int,
    head: int,
    position: int,
    groups: Int[Tensor, " batch"] | None = None,
    batch_size: int = DEFAULT_BATCH,
    keep_dtype: torch.dtype | None = None,
) -> Gathered:
    """:func:`observe` and :func:`read_slices` in one pass, for a known elevation head.

    Args:
        layer, head: the head that carries the total-elevation test.
        position: the position that head reads from query 0.
        groups, keep_dtype: as for :func:`observe` (float16 slices agree with float32
            to about 1e-4 relative; fits use float64 moments of float32 activations).
    """
    check_head(model, layer, head)
    n, width = data.tokens.shape
    if not 0 < position < width:
        raise BracketLensError(f"read position {position} is outside these {width}-token strings")
    dtype = _keep_dtype(model, n, model.cfg.n_layers + layer, keep_dtype)
    state = Pass(n, groups, dtype)
    seen = _new_observation(model, n, width, state)
    read = _new_read(model, n, layer, position, state)
    layer0_moments(model, data.tokens, seen.pooled_ln0)
    hooks = _observe_hooks(model, state, seen) + _read_hooks(model, state, read)
    run_pass(model, data, state, hooks, batch_size, position + 1)
    return Gathered(observation=seen, read=read, head=head)


def _embeds_at(
    model: BracketTransformer, tokens: Int[Tensor, " batch"], position: int
) -> Float[Tensor, "batch d_model"]:
    return model.W_E[tokens].detach() + model.W_pos[position].detach()


def project_slices(
    model: BracketTransformer,
    direction: Float[Tensor, " d_model"],
    embeds: Float[Tensor, "batch d_model"],
    z: Float[Tensor, "batch layer head d_head"],
    post: Float[Tensor, "batch layer d_mlp"],
) -> ComponentStack:
    """Kept ``z``/``post`` slices projected on ``direction``, as a component stack."""
    d = direction.detach().float()
    layers = []
    for lyr in range(z.shape[1]):
        w_o = model.W_O[lyr].detach() @ d  # [head, d_head]: project W_O first
        heads = [z[:, lyr, h].float() @ w_o[h] for h in range(model.cfg.n_heads)]
        w_out, b_out = model.W_out[lyr].detach(), model.b_out[lyr].detach()
        layers.append((heads, post[:, lyr].float() @ (w_out @ d) + b_out @ d))
    bias = model.b_O.detach()[: z.shape[1]].sum(0) @ d
    return stack_components(embeds @ d, layers, bias)
