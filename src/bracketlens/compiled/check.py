"""Score a model on every string up to a length: accuracy, mistakes and the smallest margin."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from bracketlens.data.tokens import CLOSE, END, OPEN, PAD, START, decode
from bracketlens.data.truth import is_balanced_tokens
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer

BATCH = 8192


@dataclass(frozen=True)
class Score:
    """How a model does on a set of strings.

    Attributes:
        n: strings scored.
        wrong: the strings it misclassifies (all of them).
        min_margin: the smallest |logit(unbalanced) - logit(balanced)| over all strings.
    """

    n: int
    wrong: list[str] = field(default_factory=list)
    min_margin: float = float("inf")

    @property
    def accuracy(self) -> float:
        return 1 - len(self.wrong) / self.n if self.n else float("nan")

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "n_wrong": len(self.wrong),
            "wrong": self.wrong[:100],
            "min_abs_logit_diff": self.min_margin,
        }


def all_strings(length: int) -> Int[Tensor, "batch seq"]:
    """Tokens of all ``2**length`` paren strings of one length, in binary order."""
    if not 0 <= length <= 40:
        raise BracketLensError(f"length must be between 0 and 40, got {length}")
    n = 2**length
    bits = (torch.arange(n)[:, None] >> torch.arange(length - 1, -1, -1)) & 1
    tokens = torch.full((n, length + 2), PAD, dtype=torch.int64)
    tokens[:, 0], tokens[:, -1] = START, END
    tokens[:, 1:-1] = torch.where(bits == 1, CLOSE, OPEN)
    return tokens


@torch.no_grad()
def score_tokens(model: BracketTransformer, tokens: Int[Tensor, "batch seq"]) -> Score:
    """Accuracy against the ground truth and the smallest margin, in batches."""
    wrong: list[str] = []
    margin = float("inf")
    for chunk in tokens.split(BATCH):
        logits = model.class_logits(chunk)
        diff = logits[:, 0] - logits[:, 1]
        bad = (diff < 0) != is_balanced_tokens(chunk)
        wrong += list(decode(chunk[bad])) if bad.any() else []
        margin = min(margin, float(diff.abs().min()))
    return Score(n=len(tokens), wrong=wrong, min_margin=margin)


def score_exhaustive(model: BracketTransformer, max_length: int) -> Score:
    """Score every string of length 0..``max_length`` (``2**(max_length+1) - 1`` strings)."""
    scores = [score_tokens(model, all_strings(n)) for n in range(max_length + 1)]
    return Score(
        n=sum(s.n for s in scores),
        wrong=[w for s in scores for w in s.wrong],
        min_margin=min(s.min_margin for s in scores),
    )
