"""Data: tokens, data sets, ground truth, generators."""

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set, near_miss_set, training_set
from bracketlens.data.tokens import (
    CLOSE,
    END,
    MAX_PARENS,
    N_CTX,
    OPEN,
    PAD,
    START,
    VOCAB,
    decode,
    tokenize,
)
from bracketlens.data.truth import (
    FailureGroup,
    FailureTypes,
    failure_groups,
    failure_types,
    failure_types_of,
    is_balanced,
    is_balanced_tokens,
)

__all__ = [
    "CLOSE",
    "END",
    "MAX_PARENS",
    "N_CTX",
    "OPEN",
    "PAD",
    "START",
    "VOCAB",
    "BracketDataset",
    "FailureGroup",
    "FailureTypes",
    "decode",
    "evaluation_set",
    "failure_groups",
    "failure_types",
    "failure_types_of",
    "is_balanced",
    "is_balanced_tokens",
    "near_miss_set",
    "tokenize",
    "training_set",
]
