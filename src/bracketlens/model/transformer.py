"""The bracket classifier: a small bidirectional transformer with TransformerLens hooks.

Reads top to bottom: config, LayerNorm, attention, MLP, block, model. Parameter
names and shapes are those of a TransformerLens ``HookedTransformer`` state dict
and the hook names are the same too, so ``run_with_cache(names_filter=...)``,
``run_with_hooks``, ``add_perma_hook`` and ``ActivationCache`` work as users know
them. transformer-lens 4.x removed ``HookedTransformer``; its bridge cannot host
this model faithfully (no attention-score masking hook, no per-head results), so
we build on the supported ``HookedRootModule``/``HookPoint`` instead.

Two conventions matter for reproducing the course's numbers:

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
from dataclasses import asdict, dataclass, fields
from typing import cast

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.hook_points import HookPoint

from bracketlens.data.tokens import N_CTX, PAD, VOCAB
from bracketlens.errors import BracketLensError

IGNORE = -1e5  # score of a masked key: exp(-1e5) underflows to exactly 0 in float32


@dataclass(frozen=True)
class ModelConfig:
    """Architecture, with TransformerLens' field names (``ActivationCache`` reads them)."""

    n_layers: int = 3
    n_heads: int = 2
    d_model: int = 56
    d_head: int = 28
    d_mlp: int = 56
    n_ctx: int = N_CTX
    d_vocab: int = len(VOCAB)
    d_vocab_out: int = 2
    act_fn: str = "relu"
    normalization_type: str = "LN"
    attention_dir: str = "bidirectional"
    eps: float = 1e-5
    pad_token_id: int = PAD
    # read by ActivationCache; fixed for this architecture
    attn_only: bool = False
    positional_embedding_type: str = "standard"
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ModelConfig:
        """The config saved as ``d``, checked field by field (types, ranges, fixed values).

        Raises:
            BracketLensError: ``d`` is not a JSON object, names an unknown field, or
                holds a value this architecture cannot run with.
        """
        if not isinstance(d, dict):
            raise BracketLensError(f"a model config is a JSON object, not {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)}, key=str)
        if unknown:
            raise BracketLensError(f"unknown model config fields: {', '.join(map(str, unknown))}")
        return cls(**d)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every parameter a model of this config has, in order."""
        nh, dm, dh, dmlp = self.n_heads, self.d_model, self.d_head, self.d_mlp
        ln = {"w": (dm,), "b": (dm,)}
        shapes: dict[str, tuple[int, ...]] = {
            "embed.W_E": (self.d_vocab, dm),
            "pos_embed.W_pos": (self.n_ctx, dm),
        }
        for i in range(self.n_layers):
            block: dict[str, tuple[int, ...]] = {
                **{f"ln1.{k}": v for k, v in ln.items()},
                **{f"attn.W_{m}": (nh, dm, dh) for m in "QKV"},
                "attn.W_O": (nh, dh, dm),
                **{f"attn.b_{m}": (nh, dh) for m in "QKV"},
                "attn.b_O": (dm,),
                **{f"ln2.{k}": v for k, v in ln.items()},
                "mlp.W_in": (dm, dmlp),
                "mlp.b_in": (dmlp,),
                "mlp.W_out": (dmlp, dm),
                "mlp.b_out": (dm,),
            }
            shapes |= {f"blocks.{i}.{k}": v for k, v in block.items()}
        shapes |= {f"ln_final.{k}": v for k, v in ln.items()}
        return shapes | {"unembed.W_U": (dm, self.d_vocab_out), "unembed.b_U": (self.d_vocab_out,)}


_LIMITS = {  # field: (smallest, largest); the upper bounds only keep numbers sane
    "n_layers": (1, 64),
    "n_heads": (1, 256),
    "d_model": (1, 65_536),
    "d_head": (1, 65_536),
    "d_mlp": (1, 65_536),
    "n_ctx": (N_CTX, 65_536),  # every tokenized string must fit
    "d_vocab": (len(VOCAB), 65_536),  # every token id must have an embedding
}
_FIXED = {  # what the forward pass implements, whatever a config says
    "d_vocab_out": 2,
    "pad_token_id": PAD,
    "act_fn": "relu",
    "normalization_type": "LN",
    "attention_dir": "bidirectional",
    "attn_only": False,
    "positional_embedding_type": "standard",
}


def _check_config(cfg: ModelConfig) -> None:
    """Raise :class:`BracketLensError` naming the first field this model cannot run with."""
    for name, (low, high) in _LIMITS.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BracketLensError(
                f"model config {name} must be a whole number from {low:,} to {high:,}; "
                f"got {value!r}"
            )
    for name, fixed in _FIXED.items():
        value = getattr(cfg, name)
        if type(value) is not type(fixed) or value != fixed:
            raise BracketLensError(
                f"model config {name} is {value!r}; this architecture only runs with {fixed!r}"
            )
    eps = cfg.eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
        raise BracketLensError(f"model config eps must be a number between 0 and 1; got {eps!r}")
    if not isinstance(cfg.device, str):
        raise BracketLensError(f"model config device must be a string; got {cfg.device!r}")


class LayerNorm(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_scale = HookPoint()  # (B, T, 1)
        self.hook_normalized = HookPoint()  # (B, T, d_model), after the affine map

    def forward(
        self, x: Float[Tensor, "... d_model"], *, hooked: bool = True
    ) -> Float[Tensor, "... d_model"]:
        """``hooked=False`` fires neither hook (for a hook that applies the LayerNorm)."""
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        if hooked:
            scale = self.hook_scale(scale)
        if torch.is_grad_enabled():
            out = x / scale * self.w + self.b
        else:  # the same operations in place: two fewer allocations, the same numbers
            out = (x / scale).mul_(self.w).add_(self.b)
        return self.hook_normalized(out) if hooked else out


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
        resid = self.hook_resid_pre(resid)
        if self.split_inputs:
            attn_out = self.hook_attn_out(self._split_attention(resid, pad, queries))
        else:
            attn_out = self.hook_attn_out(self.attn(self.ln1(resid), pad, queries))
        return self.second_half((resid if queries is None else resid[:, :queries]) + attn_out)

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
        ln = self.ln1
        return self.attn.forward_split(
            ln(q_in, hooked=False), ln(k_in, hooked=False), ln(v_in, hooked=False), pad
        )

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


class BracketTransformer(HookedRootModule):
    """The classifier. ``model(tokens)`` gives logits ``[batch, pos, 2]``.

    The class is read at position 0 (``[start]``): logits are (unbalanced, balanced).
    """

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.embed = Embed(self.cfg)
        self.pos_embed = PosEmbed(self.cfg)
        self.blocks = nn.ModuleList([TransformerBlock(self.cfg) for _ in range(self.cfg.n_layers)])
        self.ln_final = LayerNorm(self.cfg)
        self.unembed = Unembed(self.cfg)
        self.hook_tokens = HookPoint()
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.init_weights(seed=None)
        self.setup()  # HookedRootModule: names every HookPoint, builds hook_dict

    def set_split_inputs(self, on: bool) -> None:
        """Give every head's query, key and value input and every MLP's input a hook of its
        own (``blocks.L.hook_q_input``, ``hook_k_input``, ``hook_v_input``
        ``[batch, pos, head, d_model]``, and ``blocks.L.hook_mlp_in``), before the LayerNorm,
        as TransformerLens's ``set_use_split_qkv_input``. Off by default: the split forward
        computes the same logits, more slowly. Patching one of these inputs changes what
        one head reads (as query, key or value) or what one MLP reads, and nothing else."""
        for block in self.blocks:
            cast(TransformerBlock, block).split_inputs = on

    def init_weights(self, seed: int | None, std: float | None = None) -> None:
        """Initialise as TransformerLens does: N(0, 0.8/sqrt(d_model)) weights, zero biases.

        A small std (e.g. 0.02) makes attention scores, a product of two weight
        matrices, nearly constant and their gradients tiny: training then plateaus.
        """
        std = 0.8 / math.sqrt(self.cfg.d_model) if std is None else std
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith(("ln1.w", "ln2.w", "ln_final.w")):
                    p.fill_(1.0)
                elif name.split(".")[-1].startswith("W_"):
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                else:
                    p.zero_()

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        *,
        class_only: bool = False,
        stop_at_layer: int | None = None,
    ) -> Float[Tensor, "batch pos 2"]:
        """Logits at every position, or with ``class_only`` at position 0 alone (``[batch, 1, 2]``).

        Only position 0 is read, and the last block needs keys and values at every
        position but a query, an MLP and an unembedding at position 0 only: with
        ``class_only`` only those are computed, and the last block's hooks from the
        attention scores on see position 0 alone (hooks before them see every position).
        With ``stop_at_layer`` (< ``n_layers``), the pass stops at that block's input:
        its ``hook_resid_pre`` fires and the residual is returned, not logits.
        """
        tokens = self.hook_tokens(tokens)
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        if stop_at_layer is not None:
            if not 0 <= stop_at_layer < self.cfg.n_layers:
                raise BracketLensError(
                    f"stop_at_layer must be a block, 0 to {self.cfg.n_layers - 1}; "
                    f"got {stop_at_layer}"
                )
            block = cast(TransformerBlock, self.blocks[stop_at_layer])
            return block.hook_resid_pre(self.run_blocks(resid, tokens, 0, stop_at_layer))
        return self.forward_from(0, resid, tokens, class_only=class_only)

    def forward_from(
        self,
        layer: int,
        resid: Float[Tensor, "batch pos d_model"],
        tokens: Int[Tensor, "batch pos"],
        *,
        class_only: bool = False,
        mid: bool = False,
    ) -> Float[Tensor, "batch pos 2"]:
        """The logits from the residual stream entering block ``layer`` (its hooks fire).

        An intervention at ``layer`` or later leaves everything before it as in the
        clean run, so it can start from the clean ``blocks.{layer}.hook_resid_pre``.
        With ``mid``, ``resid`` is block ``layer``'s ``hook_resid_mid`` (what its MLP
        half reads), and the run starts there. ``class_only`` as in :meth:`forward`;
        ``layer`` may be ``n_layers`` (``resid``: the last block's output).
        """
        resid = self.run_blocks(resid, tokens, layer, mid=mid, class_only=class_only)
        return self.unembed(self.ln_final(resid[:, :1] if class_only else resid))

    def run_blocks(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        tokens: Int[Tensor, "batch pos"],
        start: int,
        stop: int | None = None,
        *,
        mid: bool = False,
        class_only: bool = False,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream after blocks ``start`` to ``stop - 1`` (default: the last).

        ``resid`` enters block ``start`` (its ``hook_resid_mid`` with ``mid``); the
        last block computes position 0 alone with ``class_only``.
        """
        pad = tokens == self.cfg.pad_token_id
        last = self.cfg.n_layers - 1
        stop = self.cfg.n_layers if stop is None else stop
        for i in range(start, stop):
            block = cast(TransformerBlock, self.blocks[i])
            if mid and i == start:
                resid = block.second_half(resid[:, :1] if class_only and i == last else resid)
            else:
                resid = block(resid, pad, 1 if class_only and i == last else None)
        return resid

    def at_position_0_only(self, hook_name: str) -> bool:
        """Whether ``class_only`` computes this hook at position 0 alone: the last block's
        from the queries on (its keys, values and first LayerNorm see every position)."""
        last = f"blocks.{self.cfg.n_layers - 1}."
        if hook_name.startswith("ln_final."):
            return True
        if not hook_name.startswith(last):
            return False
        return not hook_name[len(last) :].startswith(
            ("hook_resid_pre", "ln1.", "attn.hook_k", "attn.hook_v", "hook_k_input", "hook_v_input")
        )

    def class_logits(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch 2"]:
        """The logits at position 0 only: ``self(tokens)[:, 0]`` at about 80% of the cost."""
        return self(tokens, class_only=True)[:, 0]

    def run_with_cache(self, *args, **kwargs) -> tuple[Tensor, ActivationCache]:
        """As ``HookedRootModule.run_with_cache``, returning an ``ActivationCache``."""
        out, cache = super().run_with_cache(*args, **kwargs)
        batch_dim = not kwargs.get("remove_batch_dim", False)
        return out, ActivationCache(cache, self, has_batch_dim=batch_dim)

    # Stacked weights, [layer, head, ...] as TransformerLens users know them.
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> Float[Tensor, "d_model 2"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, " 2"]:
        return self.unembed.b_U

    def _stack(self, path: str) -> Tensor:
        module, name = path.split(".")
        return torch.stack([getattr(getattr(b, module), name) for b in self.blocks])

    W_Q = property(lambda self: self._stack("attn.W_Q"), doc="[layer, head, d_model, d_head]")
    W_K = property(lambda self: self._stack("attn.W_K"), doc="[layer, head, d_model, d_head]")
    W_V = property(lambda self: self._stack("attn.W_V"), doc="[layer, head, d_model, d_head]")
    W_O = property(lambda self: self._stack("attn.W_O"), doc="[layer, head, d_head, d_model]")
    b_Q = property(lambda self: self._stack("attn.b_Q"), doc="[layer, head, d_head]")
    b_K = property(lambda self: self._stack("attn.b_K"), doc="[layer, head, d_head]")
    b_V = property(lambda self: self._stack("attn.b_V"), doc="[layer, head, d_head]")
    b_O = property(lambda self: self._stack("attn.b_O"), doc="[layer, d_model]")
    W_in = property(lambda self: self._stack("mlp.W_in"), doc="[layer, d_model, d_mlp]")
    W_out = property(lambda self: self._stack("mlp.W_out"), doc="[layer, d_mlp, d_model]")
    b_in = property(lambda self: self._stack("mlp.b_in"), doc="[layer, d_mlp]")
    b_out = property(lambda self: self._stack("mlp.b_out"), doc="[layer, d_model]")

    @property
    def QK(self) -> FactoredMatrix:
        """``W_Q @ W_K^T`` per layer and head, ``[layer, head, d_model, d_model]``."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """``W_V @ W_O`` per layer and head, ``[layer, head, d_model, d_model]``."""
        return FactoredMatrix(self.W_V, self.W_O)
