"""Path patching of the claimed elevation route.

The hypothesis names a route: the tallying head's output at the read position
feeds the MLPs there, their output is what the elevation head moves from the read
position to position 0 through its value vectors. Path patching changes the
tallying head's output at the read position (to its output on another string)
and lets that change reach the logits only along the route:

1. run the clean string with the sender patched and every head of the layers
   between frozen at its clean output: only the MLPs at the read position respond
   (the MLPs at other positions see no change), and the residual stream entering
   the elevation layer at the read position is recorded;
2. run the clean string again, changing nothing but the elevation head's value
   vector at the read position, recomputed from that recorded residual.

Step 2 is repeated for every other reader of the read position in the elevation
layer (each head's value and key there, and all of them at once), so the claimed
route is seen next to its alternatives; two references put it in context: the
same sender patch with nothing frozen (every path from the sender at the read
position), and the sender patched at every position. Effects are measured as the
mean change of the logit difference (balanced minus unbalanced) at position 0,
which adds up across paths far better than the loss (a confident model's loss
saturates), and as the loss. A path's share is its logit-difference change over
that of the sender at the read position with every path open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import isnan
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bracketlens.activations import ActSlice, get_slices
from bracketlens.circuits.elevation import Roles
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import group_rows
from bracketlens.errors import BracketLensError
from bracketlens.interventions import run_from, set_at, start_after
from bracketlens.interventions.ablate import group_means
from bracketlens.model.checks import check_head
from bracketlens.model.layers import Attention
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH, iter_batches
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, bootstrap_ratio


@dataclass(frozen=True)
class PathEffect:
    """One patched path: mean loss and mean logit-difference change, per failure group."""

    path: str
    loss: dict[str, float]
    logit_diff_change: dict[str, float]
    per_string: np.ndarray | None = None  # logit-difference change of each string


ROUTE = "route"  # the claimed route's key in PathPatch.effects
READ_ALL_PATHS = "sender at the read position, every path"
SENDER = act_name("result", 0)  # the tallying head's output (its head index picks it)


@dataclass(frozen=True)
class PathPatch:
    """The claimed route and its alternatives, each as a :class:`PathEffect`.

    Attributes:
        route: the claimed route, in words.
        clean_loss: mean loss per group without any patch.
        effects: path name -> effect; ``ROUTE`` is the claimed route.
    """

    route: str
    clean_loss: dict[str, float]
    effects: dict[str, PathEffect]
    groups: np.ndarray | None = None  # each string's failure group, for intervals

    def share_interval(
        self, group: str = "all", path: str = ROUTE, reference: str = READ_ALL_PATHS
    ) -> Estimate:
        """:meth:`share` in one group, with a 95% bootstrap interval over its strings."""
        mine, ref = self.effects[path].per_string, self.effects[reference].per_string
        if mine is None or ref is None or self.groups is None:
            raise BracketLensError("this result kept no per-string effects to resample")
        rows = group_rows(self.groups, group)
        return bootstrap_ratio(mine[rows], ref[rows])

    def to_json(self) -> dict[str, object]:
        """The route's share of the sender's effect (with intervals), and every path's effect."""
        return {
            "route": self.route,
            "route_share_of_sender_at_read_position": self.share(),
            "route_share_ci95": {
                g: self.share_interval(g).to_dict() for g, v in self.share().items() if not isnan(v)
            },
            "clean_loss": self.clean_loss,
            "logit_diff_change": {k: e.logit_diff_change for k, e in self.effects.items()},
            "loss": {k: e.loss for k, e in self.effects.items()},
        }

    def share(self, path: str = ROUTE, reference: str = READ_ALL_PATHS) -> dict[str, float]:
        """A path's logit-difference change over the reference's, per group (unclipped)."""
        mine, ref = self.effects[path].logit_diff_change, self.effects[reference].logit_diff_change
        return {g: mine[g] / ref[g] if abs(ref[g]) > 1e-9 else float("nan") for g in ref}


@torch.no_grad()
def path_patch_elevation(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    donors: Tensor | None = None,
    clean: Mapping[ActSlice, Tensor] | None = None,
) -> PathPatch:
    """Patch the tallying head at the read position along the claimed route only.

    Args:
        donors: for each string, the index of the string whose sender output is
            patched in; by default a seeded random permutation (the feature destroyed).
        clean: the slices :func:`path_patch_slices` names, of every string of
            ``data`` at full width, if a clean pass already kept them (the donors'
            sender outputs come from the same tensors: donors are strings of ``data``).
    """
    layer, head, pos, tally = (
        roles.elevation_layer,
        roles.elevation_head,
        roles.read_position,
        roles.tally_head,
    )
    check_head(model, layer, head)
    check_head(model, 0, tally)
    if layer < 1:
        raise BracketLensError("path patching needs the elevation head after layer 0")
    if not 0 < pos < data.tokens.shape[1]:
        raise BracketLensError(f"read position {pos} is outside the strings")
    if donors is None:
        donors = torch.from_numpy(np.random.default_rng(seed).permutation(len(data)))
    elif donors.shape != (len(data),):
        raise BracketLensError("donors must hold one string index per string of the data")
    parts = path_patch_slices(roles, model.cfg.n_heads)
    acts = clean
    if acts is None or any(part not in acts for part in parts):
        acts = get_slices(model, data.tokens, parts)
    merged: dict[str, Tensor] = {}
    for rows, batch_tokens in iter_batches(data.tokens, batch_size):
        # pad keys are masked, so each string's activations at its own positions do not
        # depend on how wide the pass that computed them was
        width = max(batch_tokens.shape[1], pos + 1)
        clean_out = {
            part: acts[part][rows, :width] if part.position is None or part.is_pattern
            else acts[part][rows]
            for part in parts
        }  # fmt: skip
        donor_out = acts[parts[0]][donors[rows], :width]
        batch = _batch_logits(model, data.tokens[rows, :width], clean_out, donor_out, roles)
        for key, value in batch.items():
            merged.setdefault(key, torch.empty(len(data), 2, dtype=torch.float64))[rows] = (
                value.double()
            )
    labels = data.labels.long()
    unpatched = merged.pop("clean")
    clean_diff = unpatched[:, 1] - unpatched[:, 0]
    effects = {}
    for key, value in merged.items():
        change = value[:, 1] - value[:, 0] - clean_diff
        effects[key] = PathEffect(
            path=key,
            loss=group_means(F.cross_entropy(value, labels, reduction="none"), data),
            logit_diff_change=group_means(change, data),
            per_string=change.numpy(),
        )
    return PathPatch(
        route=(
            f"head 0.{tally} at position {pos} -> MLPs at position {pos} -> head "
            f"{layer}.{head}'s value at position {pos} -> position 0"
        ),
        clean_loss=group_means(F.cross_entropy(unpatched, labels, reduction="none"), data),
        effects=effects,
        groups=data.failure_groups.numpy(),
    )


def path_patch_slices(roles: Roles, n_heads: int) -> list[ActSlice]:
    """The clean activations path patching reads: the sender (the tally head's output);
    the residual after layer 0's attention (where the sender's runs start); at the
    read position, the attention output of each layer between it and the elevation
    layer and each earlier MLP's output; and, of the elevation layer, its input, its residual
    after attention, and each head's value at the read position and the attention
    every query pays it (a value patch leaves queries and keys alone)."""
    layer, pos = roles.elevation_layer, roles.read_position
    return [
        ActSlice(SENDER, head=roles.tally_head),
        ActSlice(start_after(SENDER).hook),
        *[ActSlice(act_name("attn_out", lyr), position=pos) for lyr in range(1, layer)],
        *[ActSlice(act_name("mlp_out", lyr), position=pos) for lyr in range(layer)],
        ActSlice(act_name("resid_pre", layer)),
        ActSlice(act_name("resid_mid", layer)),
        *[ActSlice(act_name("v", layer), pos, h) for h in range(n_heads)],
        *[ActSlice(act_name("pattern", layer), pos, h) for h in range(n_heads)],
    ]


def _batch_logits(
    model: BracketTransformer,
    tokens: Tensor,
    clean: dict[ActSlice, Tensor],
    donor_out: Tensor,
    roles: Roles,
) -> dict[str, Tensor]:
    """Position-0 logits of one batch under every patch (``"clean"`` for none).

    ``clean`` holds the batch's rows of :func:`path_patch_slices`; ``donor_out`` the
    sender's output on each row's donor.
    """
    layer, head, pos = roles.elevation_layer, roles.elevation_head, roles.read_position
    # the sender is a term of the residual stream after layer 0's attention: its runs
    # start there, from the clean residual with its change added (at the read position,
    # or at every position)
    change = donor_out - clean[ActSlice(SENDER, head=roles.tally_head)]
    sent = start_after(SENDER)
    after_0 = clean[ActSlice(sent.hook)]
    at_read = after_0.clone()
    at_read[:, pos] += change[:, pos]
    recorded: dict[int, Tensor] = {}

    def record(act: Tensor, hook: Any) -> None:
        recorded[int(hook.name.split(".")[1])] = act[:, 0].clone()

    # to the last MLP before the elevation layer, each attention between frozen at its
    # clean output (so not computed): only the MLPs respond, and nothing moves between
    # positions, so the run is of the read position alone
    resid = at_read[:, pos : pos + 1]
    with model.hooks(fwd_hooks=[(act_name("mlp_out", lyr), record) for lyr in range(layer)]):
        for lyr in range(layer):
            if lyr > 0:
                resid = resid + clean[ActSlice(act_name("attn_out", lyr), position=pos)][:, None]
            resid = model.run_blocks(resid, tokens, lyr, lyr + 1, mid=True)
    # the residual the elevation layer reads at the read position when only the MLPs
    # there respond to the sender (the sender's own direct write is left clean)
    pre = clean[ActSlice(act_name("resid_pre", layer))]
    via_mlps = pre[:, pos] + sum(
        recorded[lyr] - clean[ActSlice(act_name("mlp_out", lyr), position=pos)]
        for lyr in range(layer)
    )
    direct = pre[:, pos] + change[:, pos]
    ln1 = cast(torch.nn.Module, model.blocks[layer].ln1)
    attn = cast(Attention, model.blocks[layer].attn)
    mid = clean[ActSlice(act_name("resid_mid", layer))]

    def from_mid(resid_mid: Tensor) -> Tensor:
        return run_from(model, layer, resid_mid, tokens, mid=True)

    def with_value(h: int, new: Tensor) -> Tensor:
        """Head ``h``'s value at the read position set to ``new``: the layer's attention
        output moves by a known amount, so the run starts after it."""
        column = clean[ActSlice(act_name("pattern", layer), pos, h)][:, : mid.shape[1]]
        old = clean[ActSlice(act_name("v", layer), pos, h)]
        return from_mid(mid + attn.value_change(h, column, new - old))

    def with_hook(name: str, value: Tensor, h: int | None) -> Tensor:
        with model.hooks(fwd_hooks=[(name, set_at(value, pos, h))]):
            return run_from(model, layer, pre, tokens)

    out = {"clean": from_mid(mid)}
    for h in range(model.cfg.n_heads):
        new_v = ln1(via_mlps) @ model.W_V[layer, h].detach() + model.b_V[layer, h].detach()
        out[ROUTE if h == head else f"MLPs -> head {layer}.{h}'s value"] = with_value(h, new_v)
        new_k = ln1(via_mlps) @ model.W_K[layer, h].detach() + model.b_K[layer, h].detach()
        out[f"MLPs -> head {layer}.{h}'s key"] = with_hook(act_name("k", layer), new_k, h)
    direct_v = ln1(direct) @ model.W_V[layer, head].detach() + model.b_V[layer, head].detach()
    out[f"sender -> head {layer}.{head}'s value directly"] = with_value(head, direct_v)
    out[f"MLPs -> everything layer {layer} reads"] = with_hook(
        act_name("resid_pre", layer), via_mlps, None
    )
    for key, start in ((READ_ALL_PATHS, at_read), ("sender at every position", after_0 + change)):
        out[key] = run_from(model, sent.layer, start, tokens, mid=sent.mid)
    return out
