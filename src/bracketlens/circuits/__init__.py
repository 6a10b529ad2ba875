"""Circuits: attention, OV/QK, patching, the tally, and the elevation circuit."""

from bracketlens.circuits.elevation import Claim, ElevationCircuit, Roles, analyse_elevation
from bracketlens.circuits.heads import (
    attention_patterns,
    check_head,
    head_input_direction,
    mean_attention_row,
    ov_matrix,
    qk_matrix,
    queries_and_keys,
)
from bracketlens.circuits.patching import PatchedAttention, patched_attention, run_with_patches
from bracketlens.circuits.tally import (
    TallyVectors,
    mean_squared_cosine_random,
    mlp_input_cosines,
    tally_vectors,
    token_embedding,
)

__all__ = [
    "Claim",
    "ElevationCircuit",
    "PatchedAttention",
    "Roles",
    "TallyVectors",
    "analyse_elevation",
    "attention_patterns",
    "check_head",
    "head_input_direction",
    "mean_attention_row",
    "mean_squared_cosine_random",
    "mlp_input_cosines",
    "ov_matrix",
    "patched_attention",
    "qk_matrix",
    "queries_and_keys",
    "run_with_patches",
    "tally_vectors",
    "token_embedding",
]
