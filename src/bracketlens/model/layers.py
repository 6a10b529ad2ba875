"""The transformer's layers: LayerNorm, attention, MLP, the block, embeddings and unembedding.

Parameter names and shapes are those of a TransformerLens ``HookedTransformer``, and so
are the hook names. Two conventions matter for reproducing the course's numbers:

- **LayerNorm** ``hook_normalized`` fires *after* the affine map
  (``x_hat * w + b``), as in transformer-lens 2.x, with which the course's
  published figures were computed (3.x fires it before the affine map and gives
  cos(v_L, v_R) = -0.9969 instead of -0.9974).
- **Padding**: keys that are ``[pad]`` are masked in every attention layer (their
  scores set to -1e5 before the softmax) inside the forward, *before*
  ``hook_attn_scores``, so cached scores show the mask. Pad queries are not
  masked. The logits of a string therefore do not depend on how much padding
  follows it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from bracketlens.model.config import ModelConfig

IGNORE = -1e5  # score of a masked key: exp(-1e5) underflows to exactly 0 in float32


class LayerNorm(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.one_pass = False  # through torch's kernel (:func:`one_pass_norms`)
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_scale = HookPoint()  # (B, T, 1)
        self.hook_normalized = HookPoint()  # (B, T, d_model), after the affine map

    def forward(
        self, x: Float[Tensor, "... d_model"], *, hooked: bool = True
    ) -> Float[Tensor, "... d_model"]:
        """``hooked=False`` fires neither hook (for a hook that applies the LayerNorm).
        With ``one_pass`` set (:func:`one_pass_norms`) and nothing hooked at
        ``hook_scale``, through torch's one-pass kernel (and its fused backward): faster,
        its rounding not this one's (they may differ in the last bit)."""
        if self.one_pass and not (hooked and self.hook_scale._forward_hooks):
            out = F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)
            return self.hook_normalized(out) if hooked else out
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        if hooked:
            scale = self.hook_scale(scale)
        if torch.is_grad_enabled():
            out = x / scale * self.w + self.b
        else:  # the same operations in place: two fewer allocations, the same numbers
            out = (x / scale).mul_(self.w).add_(self.b)
        return self.hook_normalized(out) if hooked else out

    def unhooked(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The same map, no hook fired (through torch's kernel with ``one_pass``)."""
        return self(x, hooked=False)


@contextmanager
def one_pass_norms(model: nn.Module) -> Iterator[None]:
    """Run every LayerNorm of ``model`` through torch's one-pass kernel (where nothing
    is hooked at its ``hook_scale``), and switch that off after."""
    norms = [m for m in model.modules() if isinstance(m, LayerNorm)]
    before = [norm.one_pass for norm in norms]  # an outer context's, kept after this one
    for norm in norms:
        norm.one_pass = True
    try:
        yield
    finally:
        for norm, was in zip(norms, before, strict=True):
            norm.one_pass = was


def _per_head(
    x: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, "head d_model d_head"],
    b: Float[Tensor, "head d_head"],
) -> Float[Tensor, "batch pos head d_head"]:
    """``x @ w[h] + b[h]`` for every head: without a gradient, one matrix product with
    the bias fused (a fifth faster than the einsum on CPU at these sizes, and the same
    numbers here); with one, the einsum, whose gradients the bundled checkpoint was trained
    with (training amplifies a change of rounding into different weights)."""
    if torch.is_grad_enabled():
        return torch.einsum("bpm,hmd->bphd", x, w) + b
    batch, pos, d_model = x.shape
    flat = torch.addmm(
        b.reshape(-1), x.reshape(-1, d_model), w.transpose(0, 1).reshape(d_model, -1)
    )
    return flat.view(batch, pos, *b.shape)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        nh, dm, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(nh, dm, dh))
        self.W_K = nn.Parameter(torch.empty(nh, dm, dh))
        self.W_V = nn.Parameter(torch.empty(nh, dm, dh))
        self.W_O = nn.Parameter(torch.empty(nh, dh, dm))
        self.b_Q = nn.Parameter(torch.zeros(nh, dh))
        self.b_K = nn.Parameter(torch.zeros(nh, dh))
        self.b_V = nn.Parameter(torch.zeros(nh, dh))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.attn_scale = math.sqrt(dh)
        self.hook_q = HookPoint()  # (B, T, nh, dh)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # (B, nh, Tq, Tk), pad keys already masked
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()  # (B, T, nh, dh)
        self.hook_result = HookPoint()  # (B, T, nh, d_model): each head's output

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"],
        pad: Bool[Tensor, "batch pos"],
        queries: int | None = None,
    ) -> Float[Tensor, "batch query d_model"]:
        """Attention output at every position, or at the first ``queries`` positions only
        (keys and values still come from every position)."""
        x_q = x if queries is None else x[:, :queries]
        q = self.hook_q(_per_head(x_q, self.W_Q, self.b_Q))
        k = self.hook_k(_per_head(x, self.W_K, self.b_K))
        v = self.hook_v(_per_head(x, self.W_V, self.b_V))
        return self.attend(q, k, v, pad)

    def forward_split(
        self,
        q_in: Float[Tensor, "batch query head d_model"],
        k_in: Float[Tensor, "batch pos head d_model"],
        v_in: Float[Tensor, "batch pos head d_model"],
        pad: Bool[Tensor, "batch pos"],
    ) -> Float[Tensor, "batch query d_model"]:
        """As :meth:`forward` from a separate, already normalised input per head and for
        each of queries, keys and values (split inputs)."""
        q = self.hook_q(torch.einsum("bphm,hmd->bphd", q_in, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bphm,hmd->bphd", k_in, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bphm,hmd->bphd", v_in, self.W_V) + self.b_V)
        return self.attend(q, k, v, pad)

    def project(
        self, x: Float[Tensor, "... d_model"]
    ) -> tuple[Tensor, Tensor, Tensor]:  # each [..., head, d_head]
        """Queries, keys and values of ``x`` (the values ``hook_q/k/v`` see, without firing
        them): for a run that recomputes them at some positions only."""
        flat = x.reshape(1, -1, x.shape[-1])
        return tuple(  # type: ignore[return-value]
            _per_head(flat, w, b).view(*x.shape[:-1], *b.shape)
            for w, b in ((self.W_Q, self.b_Q), (self.W_K, self.b_K), (self.W_V, self.b_V))
        )

    def attend(
        self,
        q: Float[Tensor, "batch query head d_head"],
        k: Float[Tensor, "batch pos head d_head"],
        v: Float[Tensor, "batch pos head d_head"],
        pad: Bool[Tensor, "batch pos"],
    ) -> Float[Tensor, "batch query d_model"]:
        """The attention output from queries, keys and values (hooks from the scores on)."""
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / self.attn_scale
        scores = self.hook_attn_scores(scores.masked_fill(pad[:, None, None, :], IGNORE))
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return self.output(self.hook_result(self.head_results(z)))

    def head_results(self, z: Float[Tensor, "batch pos head d_head"]) -> Tensor:
        """Each head's output from its ``z``, ``[batch, pos, head, d_model]`` (``hook_result``)."""
        # straight from z: never a (B, T, nh, dh, d_model) intermediate
        return torch.einsum("bqhd,hdm->bqhm", z, self.W_O)

    def value_change(
        self,
        head: int,
        attention: Float[Tensor, "batch query"],
        change: Float[Tensor, "batch d_head"],
    ) -> Float[Tensor, "batch query d_model"]:
        """How the attention output moves when ``head``'s value at one position moves by
        ``change``: queries and keys do not, so each query's ``z`` moves by its
        attention to that position (``attention``) times ``change``."""
        return attention[:, :, None] * (change @ self.W_O[head])[:, None, :]

    def output(
        self, result: Float[Tensor, "batch pos head d_model"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """The attention output (``hook_attn_out``) from the heads' outputs."""
        return result.sum(dim=2) + self.b_O


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_pre = HookPoint()  # (B, T, d_mlp)
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(F.relu(pre))
        return post @ self.W_out + self.b_out


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()
        # split inputs (TransformerLens's use_split_qkv_input and hook_mlp_in): each
        # head's query, key and value input and the MLP's input, before the LayerNorm,
        # as hooks of their own; they fire only while ``split_inputs`` is set
        self.split_inputs = False
        self.n_heads = cfg.n_heads
        self.hook_q_input = HookPoint()  # (B, T, nh, d_model)
        self.hook_k_input = HookPoint()
        self.hook_v_input = HookPoint()
        self.hook_mlp_in = HookPoint()  # (B, T, d_model)

    def forward(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        pad: Bool[Tensor, "batch pos"],
        queries: int | None = None,
    ) -> Float[Tensor, "batch query d_model"]:
        """The block's output at every position, or at the first ``queries`` only: every
        hook after the attention pattern then sees those positions alone."""
        return self.second_half(self.first_half(resid, pad, queries))

    def first_half(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        pad: Bool[Tensor, "batch pos"],
        queries: int | None = None,
    ) -> Float[Tensor, "batch query d_model"]:
        """The block up to its ``hook_resid_mid`` (which :meth:`second_half` fires): the
        input hook, the attention and its residual connection, at every position or at
        the first ``queries`` only."""
        resid = self.hook_resid_pre(resid)
        if self.split_inputs:
            attn_out = self.hook_attn_out(self._split_attention(resid, pad, queries))
        else:
            attn_out = self.hook_attn_out(self.attn(self.ln1(resid), pad, queries))
        return (resid if queries is None else resid[:, :queries]) + attn_out

    def _split_attention(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        pad: Bool[Tensor, "batch pos"],
        queries: int | None,
    ) -> Float[Tensor, "batch query d_model"]:
        """The attention from a copy of ``resid`` per head for each of q, k and v, each
        through its hook and ln1 (whose own hooks do not fire here)."""
        per_head = resid[:, :, None, :].expand(-1, -1, self.n_heads, -1)
        q_in = self.hook_q_input(per_head if queries is None else per_head[:, :queries])
        k_in = self.hook_k_input(per_head)
        v_in = self.hook_v_input(per_head)
        ln = self.ln1.unhooked
        return self.attn.forward_split(ln(q_in), ln(k_in), ln(v_in), pad)

    def second_half(
        self, resid_mid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """The block from its ``hook_resid_mid`` on: the MLP and its residual connection
        (with split inputs, the MLP reads ``hook_mlp_in``, the residual stream does not)."""
        resid = self.hook_resid_mid(resid_mid)
        mlp_in = self.hook_mlp_in(resid) if self.split_inputs else resid
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(self.ln2(mlp_in))))


class Embed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


class Unembed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out))

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos 2"]:
        return x @ self.W_U + self.b_U
