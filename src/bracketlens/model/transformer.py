"""The bracket classifier: a small bidirectional transformer with TransformerLens hooks.

The config is in :mod:`.config` and the layers in :mod:`.layers`; this module
assembles them. Parameter names and shapes are those of a TransformerLens
``HookedTransformer`` state dict and the hook names are the same too, so
``run_with_cache(names_filter=...)``, ``run_with_hooks``, ``add_perma_hook`` and
``ActivationCache`` work as users know them. transformer-lens 4.x removed ``HookedTransformer``; its bridge cannot host
this model faithfully (no attention-score masking hook, no per-head results), so
we build on the supported ``HookedRootModule``/``HookPoint`` instead.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.hook_points import HookPoint

from bracketlens.errors import BracketLensError
from bracketlens.model.config import ModelConfig
from bracketlens.model.layers import Embed, LayerNorm, PosEmbed, TransformerBlock, Unembed


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
        resid = self.embed_tokens(tokens)
        if stop_at_layer is not None:
            if not 0 <= stop_at_layer < self.cfg.n_layers:
                raise BracketLensError(
                    f"stop_at_layer must be a block, 0 to {self.cfg.n_layers - 1}; "
                    f"got {stop_at_layer}"
                )
            block = cast(TransformerBlock, self.blocks[stop_at_layer])
            return block.hook_resid_pre(self.run_blocks(resid, tokens, 0, stop_at_layer))
        return self.forward_from(0, resid, tokens, class_only=class_only)

    def embed_tokens(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block 0, token plus position embeddings (``hook_tokens``
        and the embedding hooks fire)."""
        tokens = self.hook_tokens(tokens)
        return self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))

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
