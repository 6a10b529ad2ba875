"""The negative head: does it attend where a suffix goes the wrong way?

Reading right to left, a string fails the negative test where some suffix has
more ``(`` than ``)``. If a head detects that, its attention from position 0
should concentrate on those positions, beyond what uniform attention over the
parens would put there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from bracketlens.circuits.heads import attention_patterns
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import CLOSE, OPEN
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, bootstrap


def wrong_way_positions(tokens: Int[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """Paren positions whose suffix (from there to the end) has more '(' than ')'."""
    step = (tokens == OPEN).to(torch.int32) - (tokens == CLOSE).to(torch.int32)
    suffix = step.flip(-1).cumsum(-1).flip(-1)
    return (suffix > 0) & (step != 0)


@dataclass(frozen=True)
class NegativeAttention:
    """Attention of one head from position 0 on strings that go negative.

    Attributes:
        head: ``"L.H"``.
        on_wrong_way: attention mass on the wrong-way positions, per string (mean, CI).
        uniform_baseline: the share of parens that are wrong-way positions (what
            uniform attention over the parens would give).
    """

    head: str
    on_wrong_way: Estimate
    uniform_baseline: Estimate

    @property
    def lift(self) -> float:
        """How many times more attention the wrong-way positions get than uniform."""
        return self.on_wrong_way.value / max(self.uniform_baseline.value, 1e-12)


def negative_head_attention(
    model: BracketTransformer, data: BracketDataset, layer: int, head: int
) -> NegativeAttention:
    """Attention from position 0 to wrong-way positions, on the strings that go negative."""
    negative = data[data.failure_types.negative]
    if len(negative) == 0:
        raise BracketLensError("no string of the sample goes negative; use a larger sample")
    row = attention_patterns(model, negative.tokens, layer, head)[:, 0]  # [batch, key]
    wrong = wrong_way_positions(negative.tokens)
    n_parens = (negative.tokens >= OPEN).sum(-1).clamp(min=1)
    return NegativeAttention(
        head=f"{layer}.{head}",
        on_wrong_way=bootstrap((row * wrong).sum(-1).numpy()),
        uniform_baseline=bootstrap((wrong.sum(-1) / n_parens).numpy()),
    )
