"""The model's architecture: a config with TransformerLens's field names, checked on creation.

A config read from a checkpoint is checked field by field (types, ranges, and the values
this architecture fixes), so that a damaged or foreign file fails with one line that
names the field, not inside the forward pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from bracketlens.data.tokens import N_CTX, PAD, VOCAB
from bracketlens.errors import BracketLensError


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
