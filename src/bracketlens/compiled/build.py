"""Chain the stages into one state dict: embeddings, layer 0, an empty layer 1, layer 2."""

from __future__ import annotations

import torch
from torch import Tensor

from bracketlens.compiled.basis import residual_layout
from bracketlens.compiled.layer0 import embeddings, tally_heads, threshold_mlp
from bracketlens.compiled.readout import READ_POSITION, elevation_head, negative_head, unembedding
from bracketlens.model.checkpoint import load_state
from bracketlens.model.config import ModelConfig
from bracketlens.model.transformer import BracketTransformer

TALLY_GAIN = 1.0  # the tally is written at its natural size, S(i)/m_i in [-1, 1]

# Where each role of the course's story sits, by construction (recorded in the sidecar).
ROLES: dict[str, object] = {
    "tally_head": "0.0",
    "tally_head_long_suffixes": "0.1",
    "read_position": READ_POSITION,
    "elevation_head": "2.0",
    "negative_head": "2.1",
    "mlp_neurons": ["0.0", "0.1", "0.2", "0.3"],
    "start_close_component": None,
    "unused": ["head 1.0", "head 1.1", "mlp 1", "mlp 2"],
}
DESCRIPTION = (
    "hand-built from the course's algorithm (bracketlens.compiled): layer-0 heads 0.0 "
    "(positions 1-20) and 0.1 (21-41) tally each suffix, MLP 0 tests each suffix for "
    "'goes positive' and 'not level', head 2.0 copies the test at position 1, head 2.1 "
    "averages the 'goes positive' flags, the unembedding takes their OR; layer 1 is empty"
)


def build_compiled() -> BracketTransformer:
    """The course algorithm as hand-set weights in the course's exact architecture.

    Loads wherever the course checkpoint loads: the same config, parameter names and
    shapes. Eval mode, gradients off.

    >>> from bracketlens import predict_proba, tokenize
    >>> p = predict_proba(build_compiled(), tokenize(["(())", "())(", ""]))
    >>> [round(float(x), 3) for x in p]
    [1.0, 0.0, 1.0]
    """
    model = BracketTransformer(ModelConfig())
    load_state(model, compiled_state_dict(model.cfg), source="bracketlens.compiled")
    model.eval()
    model.requires_grad_(False)
    return model


def compiled_state_dict(cfg: ModelConfig) -> dict[str, Tensor]:
    """Every parameter, float32, named as in a TransformerLens state dict."""
    layout = residual_layout()
    zero = BracketTransformer(cfg)
    # start from zeros everywhere (layer 1 and MLP 2 stay empty), LayerNorms the identity
    state = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in zero.state_dict().items()}
    for key in state:
        if key.endswith((".w", "ln_final.w")):
            state[key].fill_(1.0)
    state["embed.W_E"], state["pos_embed.W_pos"] = embeddings(layout)
    for name, value in tally_heads(layout, TALLY_GAIN).items():
        state[f"blocks.0.attn.{name}"] = value
    for name, value in threshold_mlp(layout, TALLY_GAIN, cfg.d_mlp).items():
        state[f"blocks.0.mlp.{name}"] = value
    heads = (elevation_head(layout), negative_head(layout))
    for name in heads[0]:
        state[f"blocks.2.attn.{name}"] = torch.stack([h[name] for h in heads])
    state["unembed.W_U"], state["unembed.b_U"] = unembedding(layout)
    return {k: v.to(torch.float32) for k, v in state.items()}
