"""Activation patching of queries and keys, and the attention patterns that result.

One generic runner, :func:`run_with_patches`, and small setters that build the
patches, as TransformerLens' patching module is organised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.circuits.heads import check_head, queries_and_keys
from bracketlens.data.tokens import tokenize
from bracketlens.interventions import patch
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

if TYPE_CHECKING:
    from bracketlens.circuits.elevation import Roles


@torch.no_grad()
def run_with_patches(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    patches: Mapping[str, Callable[[Tensor, object], Tensor]],
    read: str,
) -> Tensor:
    """Run with hooks that patch activations, returning the activation named ``read``."""
    seen: dict[str, Tensor] = {}

    def keep(value: Tensor, hook: object) -> None:
        seen["value"] = value

    model.run_with_hooks(tokens, fwd_hooks=[*patches.items(), (read, keep)])
    return seen["value"]


@dataclass(frozen=True)
class PatchedAttention:
    """Attention of a layer's heads with some queries or keys patched in.

    Attributes:
        pattern: ``[head, seqQ, seqK]`` mean pattern over the run's strings.
        description: which activation was patched, from where.
    """

    pattern: Float[Tensor, "head seqQ seqK"]
    description: str

    def to_json(self, roles: Roles) -> dict[str, object]:
        """The tallying head's mean row from the read position (4 decimals)."""
        row = self.pattern[roles.tally_head, roles.read_position]
        return {
            "description": self.description,
            "mean_attention_from_read_position": [round(x, 4) for x in row.tolist()],
        }


def patched_attention(
    model: BracketTransformer,
    layer: int,
    head: int,
    *,
    run_on: str,
    keys_from: list[str] | None = None,
    queries_from: list[str] | None = None,
) -> PatchedAttention:
    """The attention of ``layer`` on ``run_on`` with one head's keys or queries patched.

    Keys (queries) are averaged over the strings in ``keys_from`` (``queries_from``);
    e.g. the course patches in the keys averaged over the all-``(`` and all-``)``
    strings of length 40 to see where the tallying head attends "on average".
    """
    check_head(model, layer, head)
    n = len(run_on) + 2
    patches = {}
    parts = []
    for kind, sources in (("k", keys_from), ("q", queries_from)):
        if sources:
            mean = _mean_activation(model, sources, layer, kind, pad_to=n)
            patches[act_name(kind, layer)] = patch(mean, head=head)
            parts.append(
                f"{'keys' if kind == 'k' else 'queries'} of head {layer}.{head} "
                f"averaged over {len(sources)} strings"
            )
    pattern = run_with_patches(model, tokenize(run_on), patches, act_name("pattern", layer))
    description = f"run on {run_on[:12]}{'...' if len(run_on) > 12 else ''}; " + (
        "; ".join(parts) or "nothing patched"
    )
    return PatchedAttention(pattern=pattern.mean(0), description=description)


def _mean_activation(
    model: BracketTransformer, strings: list[str], layer: int, kind: str, pad_to: int
) -> Tensor:
    values = []
    for s in strings:
        q, k = queries_and_keys(model, tokenize(s, pad_to=pad_to), layer)
        values.append(q if kind == "q" else k)
    return torch.stack(values).mean(0)
