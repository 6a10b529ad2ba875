"""What feeds a later head, gathered during the read pass: attention-weighted sums.

A head's output at position 0 is ``sum_k A[0, k] OV(LN1(resid_k))``. Each earlier
component's share in a direction ``d`` (fitted later) is ``sum_k A[0, k] c_k . d``,
and since ``c_k`` is a linear map of the head's ``z`` or the MLP's ``post`` at ``k``,
it is that map applied to ``sum_k A[0, k] z_k``: one ``d_head`` vector per head and
one ``d_mlp`` vector per MLP per string, whatever the direction. The same sums
weighted by the wrong-way positions give the part read from where a suffix goes
negative. The layer's ``ln1`` is fitted over every paren position, from moments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.attribution.components import ComponentStack, stack_components
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import CLOSE, OPEN
from bracketlens.layernorm_fit import FitMoments, LayerNormFit
from bracketlens.model.checks import check_head
from bracketlens.model.names import act_name, ln_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes.base import HookList, Pass, run_pass


def wrong_way_positions(tokens: Tensor) -> Tensor:
    """Paren positions whose suffix (from there to the end) has more '(' than ')'."""
    step = (tokens == OPEN).to(torch.int32) - (tokens == CLOSE).to(torch.int32)
    suffix = step.flip(-1).cumsum(-1).flip(-1)
    return (suffix > 0) & (step != 0)


@dataclass(frozen=True)
class FeederSums:
    """Per string, what the components before head ``layer.head`` write, weighted by its row.

    Index 0 of the second axis weights by ``A[0, k]``; index 1 by ``A[0, k]`` on the
    wrong-way positions only.

    Attributes:
        embeds: ``[batch, 2, d_model]``; z: ``[batch, 2, layer, head, d_head]``;
        post: ``[batch, 2, layer, d_mlp]``; mass: ``[batch, 2]``, the weights' sums.
        ln: moments of ``blocks.{layer}.ln1`` over every paren position.
    """

    layer: int
    head: int
    embeds: Float[Tensor, "batch 2 d_model"]
    z: Float[Tensor, "batch 2 layer head d_head"]
    post: Float[Tensor, "batch 2 layer d_mlp"]
    mass: Float[Tensor, "batch 2"]
    ln: FitMoments

    def ln_fit(self) -> LayerNormFit:
        return self.ln.fit(layernorm=ln_name(self.layer), position=None)

    def projected(
        self, model: BracketTransformer, direction: Float[Tensor, " d_model"], which: int
    ) -> ComponentStack:
        """Each component's weighted share in ``direction`` (``which``: 0 all, 1 wrong-way)."""
        d = direction.detach().float()
        layers = []
        for lyr in range(self.layer):
            w_o = model.W_O[lyr].detach() @ d
            heads = [self.z[:, which, lyr, h] @ w_o[h] for h in range(model.cfg.n_heads)]
            w_out, b_out = model.W_out[lyr].detach(), model.b_out[lyr].detach()
            mlp = self.post[:, which, lyr] @ (w_out @ d) + self.mass[:, which] * (b_out @ d)
            layers.append((heads, mlp))
        return stack_components(self.embeds[:, which] @ d, layers, torch.zeros(()))


def new_sums(model: BracketTransformer, n: int, layer: int, head: int) -> FeederSums:
    cfg = model.cfg
    return FeederSums(
        layer=layer,
        head=head,
        embeds=torch.zeros(n, 2, cfg.d_model),
        z=torch.zeros(n, 2, layer, cfg.n_heads, cfg.d_head),
        post=torch.zeros(n, 2, layer, cfg.d_mlp),
        mass=torch.zeros(n, 2),
        ln=FitMoments(cfg.d_model, cfg.d_model),
    )


def feeder_hooks(model: BracketTransformer, state: Pass, keep: FeederSums) -> HookList:
    """Hooks that fill ``keep`` during a pass (the batch's activations wait for the row)."""
    layer, head = keep.layer, keep.head
    held: dict[str, Tensor] = {}
    w_e, w_pos = model.W_E.detach(), model.W_pos.detach()

    def hold(key: str) -> Callable[[Tensor, object], None]:
        def hook(act: Tensor, hook: object) -> None:
            held[key] = act

        return hook

    def fit_ln(y: Tensor, hook: object) -> None:
        parens = state.batch["tokens"] >= OPEN
        keep.ln.add(held.pop("x")[parens], y[parens])

    def weigh(pattern: Tensor, hook: object) -> None:
        tokens = state.batch["tokens"]
        row = pattern[:, head, 0]  # [batch, key]
        weights = torch.stack([row, row * wrong_way_positions(tokens)], 1)  # [batch, 2, key]
        embeds = w_e[tokens] + w_pos[: tokens.shape[1]]
        idx = state.idx
        keep.embeds[idx] = torch.einsum("bwk,bkd->bwd", weights, embeds)
        keep.mass[idx] = weights.sum(-1)
        for lyr in range(layer):
            keep.z[idx, :, lyr] = torch.einsum("bwk,bkhd->bwhd", weights, held.pop(f"z{lyr}"))
            keep.post[idx, :, lyr] = torch.einsum("bwk,bkd->bwd", weights, held.pop(f"p{lyr}"))

    hooks: HookList = [
        (act_name("resid_pre", layer), hold("x")),
        (act_name("normalized", layer, "ln1"), fit_ln),
        (act_name("pattern", layer), weigh),
    ]
    for lyr in range(layer):
        hooks.append((act_name("z", lyr), hold(f"z{lyr}")))
        hooks.append((act_name("post", lyr), hold(f"p{lyr}")))
    return hooks


def gather_feeders(
    model: BracketTransformer,
    data: BracketDataset,
    layer: int,
    head: int,
    batch_size: int = DEFAULT_BATCH,
) -> FeederSums:
    """A pass over ``data`` keeping only :class:`FeederSums` of head ``layer.head``."""
    check_head(model, layer, head)
    state = Pass(len(data), None, torch.float32)
    keep = new_sums(model, len(data), layer, head)
    # its hooks read the head's layer input and its pattern from query 0
    run_pass(model, data, state, feeder_hooks(model, state, keep), batch_size, class_only=True)
    return keep
