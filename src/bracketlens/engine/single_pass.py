"""The analysis of SPEC.md section 3 from one forward pass over the data.

The course computes each step with its own full ``run_with_cache``. Here every
batch runs once, with hooks on only the names the analysis reads, and each
activation is reduced on the spot to what later steps need:

- the per-head ``z`` (``d_head`` wide, not ``d_model``) and the MLP ``post`` at
  position 0 and at the read position: every component output there is a linear
  map of these, so any direction fitted later can be applied afterwards;
- the LayerNorm fits' inputs and outputs only as :class:`FitMoments` (the final
  LN at position 0, the elevation layer's ``ln1`` at the read position, and
  layer 0's ``ln1`` over all positions);
- the elevation head's attention row from query 0, and the logits at position 0.

Per string that is a few hundred floats, written into buffers allocated once for
the whole data set (per-batch copies fragment the heap). Batches are grouped by
length and their padding trimmed. The pooled layer-0 fit, which the course takes
over every position including padding, needs no activation at all: layer 0's
input is one of ``d_vocab x n_ctx`` rows, so its moments come from counting
(token, position) pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.components import ComponentStack, component_labels
from bracketlens.attribution.layernorm import LayerNormFit
from bracketlens.data.dataset import BracketDataset
from bracketlens.engine.moments import FitMoments
from bracketlens.errors import BracketLensError
from bracketlens.model.checks import check_head
from bracketlens.model.predict import DEFAULT_BATCH, Evaluation, iter_batches
from bracketlens.model.transformer import BracketTransformer

FLOAT32_BUDGET = 1 << 30  # bytes of float32 z/post slices before they are kept in float16
HALF_MAX = 60_000.0  # float16 overflows just above 65,504


@dataclass(frozen=True)
class Gathered:
    """What one pass keeps: small per-string slices and the fits' moments.

    Attributes:
        layer, head, position: the elevation head and the position it reads.
        logits: ``[batch, 2]`` at position 0.
        z_0, post_0: per-head ``z`` ``[batch, layer, head, d_head]`` and MLP ``post``
            ``[batch, layer, d_mlp]`` at position 0, every layer.
        z_read, post_read: the same at the read position, layers before ``layer``.
        attention_from_0: ``[batch, seqK]``, the elevation head's row from query 0.
        final_ln, read_ln: moments per group (see :func:`gather`'s ``groups``) of
            ``ln_final`` at position 0 and of ``blocks.{layer}.ln1`` at ``position``.
        pooled_ln0: moments of layer 0's ``ln1`` over every position, padding included
            (from token/position counts: no activation needed).
    """

    layer: int
    head: int
    position: int
    logits: Float[Tensor, "batch 2"]
    z_0: Float[Tensor, "batch layer head d_head"]
    post_0: Float[Tensor, "batch layer d_mlp"]
    z_read: Float[Tensor, "batch layer head d_head"]
    post_read: Float[Tensor, "batch layer d_mlp"]
    attention_from_0: Float[Tensor, "batch seqK"]
    final_ln: list[FitMoments]
    read_ln: list[FitMoments]
    pooled_ln0: FitMoments

    def final_fit(self, groups: list[int] | None = None) -> LayerNormFit:
        """``ln_final`` at position 0, fitted on the given groups (all by default)."""
        return _pooled(self.final_ln, groups).fit(layernorm="ln_final", position=0)

    def read_fit(self, groups: list[int] | None = None) -> LayerNormFit:
        """The elevation layer's ``ln1`` at the read position."""
        moments = _pooled(self.read_ln, groups)
        return moments.fit(layernorm=f"blocks.{self.layer}.ln1", position=self.position)

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
        return _stack(model, direction, embeds, self.z_0, self.post_0, model.cfg.n_layers)

    def components_at_read(
        self,
        model: BracketTransformer,
        tokens: Int[Tensor, "batch seq"],
        direction: Float[Tensor, " d_model"],
    ) -> ComponentStack:
        """The components written before the elevation layer, at the read position."""
        embeds = _embeds_at(model, tokens[:, self.position], self.position)
        return _stack(model, direction, embeds, self.z_read, self.post_read, self.layer)

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
    """Run the model once over ``data`` and keep what the section 3 analysis needs.

    Args:
        layer, head: the head that carries the total-elevation test.
        position: the position that head reads from query 0.
        groups: optional non-negative group id per string (e.g. the two halves of a
            fit/check split): the position-specific fits keep moments per group.
        keep_dtype: the dtype of the kept ``z``/``post`` slices. By default float32,
            or float16 once float32 slices would pass :data:`FLOAT32_BUDGET` bytes
            (about 480,000 strings): half the memory, and projections that agree with
            float32 to about 1e-4 relative (fits are unaffected: their moments are
            accumulated in float64 from the float32 activations).
    """
    check_head(model, layer, head)
    cfg = model.cfg
    n, width = data.tokens.shape
    if not 0 < position < width:
        raise BracketLensError(f"read position {position} is outside these {width}-token strings")
    group_ids = torch.zeros(n, dtype=torch.long) if groups is None else groups.long()
    if group_ids.shape != (n,) or (len(group_ids) and group_ids.min() < 0):
        raise BracketLensError("groups must hold one non-negative integer per string")
    n_groups = int(group_ids.max()) + 1 if n else 1
    nl, nh, dh, dm, dmlp = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model, cfg.d_mlp
    per_string = (nl + layer) * (nh * dh + dmlp)  # floats kept in z/post slices
    if keep_dtype is None:
        keep_dtype = torch.float16 if 4 * per_string * n > FLOAT32_BUDGET else torch.float32
    keep = Gathered(
        layer=layer,
        head=head,
        position=position,
        logits=torch.empty(n, cfg.d_vocab_out),
        z_0=torch.empty(n, nl, nh, dh, dtype=keep_dtype),
        post_0=torch.empty(n, nl, dmlp, dtype=keep_dtype),
        z_read=torch.empty(n, layer, nh, dh, dtype=keep_dtype),
        post_read=torch.empty(n, layer, dmlp, dtype=keep_dtype),
        attention_from_0=torch.zeros(n, width),
        final_ln=[FitMoments(dm, dm) for _ in range(n_groups)],
        read_ln=[FitMoments(dm, dm) for _ in range(n_groups)],
        pooled_ln0=FitMoments(dm, dm),
    )
    batch: dict[str, Tensor] = {}  # the current batch's indices and pending LN inputs

    def store(name: str, fn: Callable[[Tensor], None]) -> tuple[str, Callable[..., Any]]:
        def hook(act: Tensor, hook: object) -> None:
            fn(act)

        return name, hook

    def per_group(moments: list[FitMoments], x: Tensor, y: Tensor) -> None:
        if n_groups == 1:
            moments[0].add(x, y)
            return
        g = group_ids[batch["idx"]]
        for gid in torch.unique(g).tolist():
            rows = g == gid
            moments[gid].add(x[rows], y[rows])

    def final(y: Tensor) -> None:
        y0 = y[:, 0]
        per_group(keep.final_ln, batch.pop("x_final"), y0)
        keep.logits[batch["idx"]] = y0 @ model.W_U.detach() + model.b_U.detach()

    def to_kept(act: Tensor) -> Tensor:
        if keep_dtype == torch.float16 and act.abs().max() > HALF_MAX:
            raise BracketLensError(
                "activations too large to keep in float16; pass keep_dtype=torch.float32"
            )
        return act.to(keep_dtype)

    def z_hook(lyr: int) -> Callable[[Tensor], None]:
        def fn(z: Tensor) -> None:
            z = to_kept(z)
            keep.z_0[batch["idx"], lyr] = z[:, 0]
            if lyr < layer:
                keep.z_read[batch["idx"], lyr] = z[:, position]

        return fn

    def post_hook(lyr: int) -> Callable[[Tensor], None]:
        def fn(post: Tensor) -> None:
            post = to_kept(post)
            keep.post_0[batch["idx"], lyr] = post[:, 0]
            if lyr < layer:
                keep.post_read[batch["idx"], lyr] = post[:, position]

        return fn

    def pattern(p: Tensor) -> None:
        keep.attention_from_0[batch["idx"], : p.shape[-1]] = p[:, head, 0]

    def pending(key: str, pos: int | None) -> Callable[[Tensor], None]:
        def fn(x: Tensor) -> None:
            batch[key] = x if pos is None else x[:, pos]

        return fn

    def read_y(y: Tensor) -> None:
        per_group(keep.read_ln, batch.pop("x_read"), y[:, position])

    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        store(f"blocks.{layer}.hook_resid_pre", pending("x_read", position)),
        store(f"blocks.{layer}.ln1.hook_normalized", read_y),
        store(f"blocks.{layer}.attn.hook_pattern", pattern),
        store(f"blocks.{nl - 1}.hook_resid_post", pending("x_final", 0)),
        store("ln_final.hook_normalized", final),
    ]
    for lyr in range(nl):
        hooks.append(store(f"blocks.{lyr}.attn.hook_z", z_hook(lyr)))
        hooks.append(store(f"blocks.{lyr}.mlp.hook_post", post_hook(lyr)))
    _pooled_layer0(model, data.tokens, keep.pooled_ln0)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for idx, tokens in iter_batches(data.tokens, batch_size):
            # every batch keeps the read position, even if its strings are shorter
            batch["idx"] = idx
            if tokens.shape[1] <= position:
                tokens = data.tokens[idx, : position + 1]
            model(tokens)
    return keep


def _pooled(moments: list[FitMoments], groups: list[int] | None) -> FitMoments:
    chosen = range(len(moments)) if groups is None else groups
    out = FitMoments(*moments[0].sxy.shape)
    for g in chosen:
        if not 0 <= g < len(moments):
            raise BracketLensError(f"no group {g}: the pass has groups 0..{len(moments) - 1}")
        out = out.merged(moments[g])
    return out


def _pooled_layer0(model: BracketTransformer, tokens: Tensor, moments: FitMoments) -> None:
    """Moments of layer 0's ``ln1`` over every (string, position), padding included.

    Its input at a position is ``W_E[token] + W_pos[position]``: at most
    ``d_vocab x n_ctx`` distinct rows. Counting how often each occurs and adding each
    distinct row once, weighted by its count, gives exactly the moments of all rows
    at a tiny fraction of the cost, and needs no hook in the forward pass.
    """
    n_vocab, width = model.cfg.d_vocab, tokens.shape[1]
    pair = tokens * width + torch.arange(width)  # (token, position) as one index
    counts = torch.bincount(pair.flatten(), minlength=n_vocab * width).double()
    seen = counts > 0
    with torch.no_grad():
        x = (model.W_E.detach()[:, None, :] + model.W_pos.detach()[None, :width, :]).flatten(0, 1)
        ln1 = cast(torch.nn.Module, model.blocks[0].ln1)  # called before any hook is added
        moments.add(x[seen], ln1(x[seen][None])[0], counts[seen])


def _embeds_at(
    model: BracketTransformer, tokens: Int[Tensor, " batch"], position: int
) -> Float[Tensor, "batch d_model"]:
    return model.W_E[tokens].detach() + model.W_pos[position].detach()


def _stack(
    model: BracketTransformer,
    direction: Tensor,
    embeds: Tensor,
    z: Tensor,
    post: Tensor,
    n_layers: int,
) -> ComponentStack:
    """Project kept ``z``/``post`` slices on ``direction`` as a component stack."""
    d = direction.detach().float()
    parts = [embeds @ d]
    for lyr in range(n_layers):
        w_o = model.W_O[lyr].detach() @ d  # [head, d_head]: project W_O first
        parts += [z[:, lyr, h].float() @ w_o[h] for h in range(model.cfg.n_heads)]
        w_out, b_out = model.W_out[lyr].detach(), model.b_out[lyr].detach()
        parts.append(post[:, lyr].float() @ (w_out @ d) + b_out @ d)
    labels = component_labels(model.cfg)[: 1 + n_layers * (model.cfg.n_heads + 1)]
    bias = model.b_O.detach()[:n_layers].sum(0) @ d
    return ComponentStack(torch.stack(parts), labels, bias)
