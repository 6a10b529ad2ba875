"""Edge patching: a receiver's input takes a sender's counterfactual output.

With split inputs (:meth:`BracketTransformer.set_split_inputs`), each head's query,
key and value input and each MLP's input has a hook of its own. Patching the edge
from sender ``s`` to receiver ``r`` at position ``p`` adds ``s``'s (counterfactual -
current) output at ``p`` to ``r``'s input there, where "current" is ``s``'s output
in the patched run itself (so a patched edge carries the counterfactual value even
when upstream edges change ``s``). :func:`edge_hooks` gives the hooks of one batch
for :func:`.hooks.run_patched`'s ``per_batch``: every row its own circuit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.interventions.hooks import Hook
from bracketlens.model.layers import one_pass_norms


@dataclass(frozen=True)
class EdgeSites:
    """Where senders write and receivers read, in the order of a graph's tables.

    Attributes:
        senders: each sender's hook and head (None: the hook is the sender's output).
        receivers: each receiving hook with the receiver indices it holds (one per head
            for ``hook_q_input`` and the like, one for ``hook_mlp_in``), and whether it
            has a head axis. A receiver hook at position 0 only (the logits, read from
            the last block's ``hook_resid_post``) is patched at position 0 alone.
        position_0: receiver indices patched at position 0 alone.
    """

    senders: tuple[tuple[str, int | None], ...]
    receivers: tuple[tuple[str, tuple[int, ...], bool], ...]
    position_0: frozenset[int]


@contextmanager
def split_inputs(model: torch.nn.Module, *, one_pass: bool = False) -> Iterator[None]:
    """Run with the model's split input hooks on, and switch them off after. With
    ``one_pass``, every LayerNorm runs through torch's kernel, forward and backward
    (:func:`~bracketlens.model.layers.one_pass_norms`): faster, rounded differently."""
    model.set_split_inputs(True)  # type: ignore[operator]
    try:
        with one_pass_norms(model) if one_pass else nullcontext():
            yield
    finally:
        model.set_split_inputs(False)  # type: ignore[operator]


class _EdgePatch:
    """One batch's edge patching: the senders' (counterfactual - current) outputs as the
    run passes them, and each receiver input's change from them.

    A block's head inputs (queries, keys, values) read the same senders: where one
    reads every position, the changes of it and of the block's later head inputs
    that read every position too are taken in one product (the senders' outputs are
    read once) and kept for those inputs.
    """

    def __init__(self, sites: EdgeSites, corrupt: Tensor, cut: Tensor) -> None:
        self.sites, self.corrupt = sites, corrupt
        self.weights = cut.permute(0, 3, 1, 2)  # [batch, pos, receiver, sender]
        self.diffs: Tensor | None = None  # [batch, pos, sender, d_model]
        self.seen = 0
        self.ahead: dict[str, Tensor] = {}

    def record(self, head: int | None) -> Hook:
        def hook(act: Tensor, hook: object) -> Tensor:
            out = act if head is None else act[:, :, head]
            width = out.shape[1]
            if self.diffs is None:
                shape = (len(act), width, len(self.sites.senders), act.shape[-1])
                self.diffs = act.new_zeros(shape)
            diff = self.corrupt[:, self.seen, :width].to(act.dtype) - out
            if torch.is_grad_enabled():  # earlier receivers' changes read the old entries
                self.diffs = self.diffs.clone()
            self.diffs[:, :width, self.seen] = diff
            self.seen += 1
            return act

        return hook

    def _change(
        self, group: list[tuple[str, tuple[int, ...]]], width: int, dtype: torch.dtype
    ) -> Tensor:
        """The change of the first input of ``group`` (and, kept, of the others)."""
        assert self.diffs is not None
        if width != self.diffs.shape[1]:
            group = group[:1]
        indices = [r for _, idx in group for r in idx]
        w = self.weights[:, :width, indices, : self.seen].to(dtype)
        delta = w @ self.diffs[:, :width, : self.seen]  # [batch, pos, receiver, d_model]
        parts = delta.split([len(idx) for _, idx in group], dim=2)
        self.ahead |= {name: part for (name, _), part in zip(group[1:], parts[1:], strict=True)}
        return parts[0]

    def patch_in(self, group: list[tuple[str, tuple[int, ...]]], has_head: bool) -> Hook:
        name, indices = group[0]

        def hook(act: Tensor, hook: object) -> Tensor:
            width = 1 if indices[0] in self.sites.position_0 else act.shape[1]
            delta = self.ahead.pop(name, None)
            if delta is None or delta.shape[1] != width:
                delta = self._change(group, width, act.dtype)
            if not has_head:
                delta = delta[:, :, 0]
            if width == act.shape[1]:
                return act + delta
            act = act.clone()
            act[:, :width] += delta
            return act

        return hook


def edge_hooks(
    sites: EdgeSites,
    corrupt: Float[Tensor, "batch sender pos d_model"],
    cut: Float[Tensor, "batch receiver sender pos"],
) -> list[tuple[str, Hook]]:
    """The hooks patching each row's ``cut`` edges from ``corrupt`` (one batch's rows).

    ``cut`` is 1 where an edge is patched, 0 where it is kept (fractions interpolate);
    its position axis may be 1 wide (the same edges at every position). Each sender's
    (counterfactual - current) output is taken once, as the run passes it, and each
    receiver's input moves by the ``cut``-weighted sum of those of the senders before it.
    """
    patch = _EdgePatch(sites, corrupt, cut)
    hooks: list[tuple[str, Hook]] = []
    sender_hooks = {name: [] for name, _ in sites.senders}  # type: dict[str, list[int | None]]
    for name, head in sites.senders:
        sender_hooks[name].append(head)
    for name, heads in sender_hooks.items():
        hooks += [(name, patch.record(h)) for h in heads]
    for k, (name, indices, has_head) in enumerate(sites.receivers):
        group = [(name, indices)]
        block = name.rsplit(".", 1)[0]
        for later, later_idx, later_head in sites.receivers[k + 1 :]:
            if not (has_head and later_head and later.rsplit(".", 1)[0] == block):
                break
            group.append((later, later_idx))
        hooks.append((name, patch.patch_in(group, has_head)))
    return hooks


def stack_outputs(
    sites: EdgeSites, cache: dict[str, Tensor]
) -> Float[Tensor, "batch sender pos d_model"]:
    """Every sender's output from a run's cache, stacked in sender order."""
    return torch.stack(
        [cache[name] if head is None else cache[name][:, :, head] for name, head in sites.senders],
        dim=1,
    )


def sender_names(sites: EdgeSites) -> Sequence[str]:
    """The distinct hooks senders write at (for ``names_filter``)."""
    return sorted({name for name, _ in sites.senders})
