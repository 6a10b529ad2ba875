"""Validation of layer and head indices against a model's config."""

from __future__ import annotations

from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer


def check_head(model: BracketTransformer, layer: int, head: int | None = None) -> None:
    """Raise :class:`BracketLensError` unless ``layer`` (and ``head``) exist in the model."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise BracketLensError(f"unknown layer {layer!r}: this model has layers 0..{n_layers - 1}")
    if head is not None and (
        isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < n_heads
    ):
        raise BracketLensError(f"unknown head {head!r}: each layer has heads 0..{n_heads - 1}")


MIN_CIRCUIT_LAYERS = 2  # the circuit is a tally in layer 0 read by a head in a later layer


def check_circuit_model(model: BracketTransformer, purpose: str) -> None:
    """Raise :class:`BracketLensError` unless ``model`` has room for the circuit the analyses seek."""
    n_layers = model.cfg.n_layers
    if n_layers < MIN_CIRCUIT_LAYERS:
        raise BracketLensError(
            f"{purpose} needs a model of at least {MIN_CIRCUIT_LAYERS} layers (a tally in layer 0 "
            f"that a head in a later layer reads); this one has {n_layers}"
        )
