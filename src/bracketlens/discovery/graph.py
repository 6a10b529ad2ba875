"""The computational graph circuits are drawn on: senders, receiver inputs and edges.

Senders are the embeddings (token plus position, what enters block 0), each head's
output and each MLP's output; receivers are each head's query, key and value input,
each MLP's input and the logits at position 0. An edge joins a sender at position
``p`` to a receiver input at the same position: mixing across positions happens
inside attention and is not an edge (the position-aware graph of Haklay et al.,
2025, for a bidirectional model). The component level sums positions: 100 edges for
3 layers of 2 heads.

Edges are held as a dense ``[receiver, sender]`` table (``upstream``): a sender
feeds a receiver when it runs before it (a layer's heads feed its MLP, not its
other heads). A circuit is a boolean ``[receiver, sender]`` mask at component level
or ``[receiver, sender, position]`` at position level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool
from torch import Tensor

from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name

INPUTS = ("q", "k", "v")


@dataclass(frozen=True)
class Sender:
    """One sender: ``kind`` "embed", "head" or "mlp", with its layer and head."""

    kind: str
    layer: int = -1
    head: int | None = None

    @property
    def name(self) -> str:
        """``embed``, ``L.H`` or ``mlpL``, as the JSON names components."""
        if self.kind == "embed":
            return "embed"
        return f"{self.layer}.{self.head}" if self.kind == "head" else f"mlp{self.layer}"

    @property
    def hook(self) -> str:
        """The hook carrying its output (a head's is ``[.., head, d_model]``)."""
        if self.kind == "embed":
            return act_name("resid_pre", 0)
        return act_name("result" if self.kind == "head" else "mlp_out", self.layer)


@dataclass(frozen=True)
class Receiver:
    """One receiver input: ``input`` "q", "k", "v" (a head), "mlp" or "logits"."""

    input: str
    layer: int = -1
    head: int | None = None

    @property
    def name(self) -> str:
        """The receiving component's name: ``L.H``, ``mlpL`` or ``logits``."""
        if self.input == "logits":
            return "logits"
        return f"{self.layer}.{self.head}" if self.head is not None else f"mlp{self.layer}"


@dataclass(frozen=True)
class Graph:
    """Senders, receivers and which sender feeds which receiver, for one architecture."""

    n_layers: int
    n_heads: int
    senders: tuple[Sender, ...]
    receivers: tuple[Receiver, ...]
    upstream: Bool[Tensor, "receiver sender"]

    @classmethod
    def of(cls, cfg: ModelConfig) -> Graph:
        """The graph of a model with ``cfg``'s numbers of layers and heads."""
        senders = [Sender("embed")]
        receivers: list[Receiver] = []
        order: list[int] = [0]  # the forward step at which each sender is computed
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                senders.append(Sender("head", layer, head))
                order.append(2 * layer + 1)
                receivers += [Receiver(x, layer, head) for x in INPUTS]
            senders.append(Sender("mlp", layer))
            order.append(2 * layer + 2)
            receivers.append(Receiver("mlp", layer))
        receivers.append(Receiver("logits"))
        reads_at = [  # a receiver reads every sender computed before its own step
            2 * r.layer + (1 if r.input in INPUTS else 2) if r.input != "logits" else 2**30
            for r in receivers
        ]
        upstream = torch.tensor([[o < at for o in order] for at in reads_at])
        return cls(cfg.n_layers, cfg.n_heads, tuple(senders), tuple(receivers), upstream)

    @property
    def n_edges(self) -> int:
        """Edges at component level."""
        return int(self.upstream.sum())

    def edges(self) -> list[tuple[int, int]]:
        """Every component-level edge as ``(receiver, sender)`` indices, in table order."""
        return [(int(r), int(s)) for r, s in self.upstream.nonzero().tolist()]

    def receivers_of(self, layer: int, input: str) -> list[int]:
        """Indices of ``layer``'s receivers of one input kind (a head's: in head order)."""
        return [i for i, r in enumerate(self.receivers) if r.layer == layer and r.input == input]

    def logits_receiver(self) -> int:
        return len(self.receivers) - 1

    def live(self, real: Bool[Tensor, " pos"]) -> Bool[Tensor, "receiver sender pos"]:
        """Position-level edges on some path to the logits at position 0, at ``real``
        (non-pad) positions.

        The logits read position 0. A head's output at ``p`` matters when some later
        live receiver reads position ``p``; a head's keys and values at ``p`` matter
        when any of its query positions does; its query at ``p`` when its output at
        ``p`` does; an MLP's input at ``p`` when its output at ``p`` does.
        """
        width = len(real)
        out_live = torch.zeros(len(self.senders), width, dtype=torch.bool)
        recv_live = torch.zeros(len(self.receivers), width, dtype=torch.bool)
        recv_live[self.logits_receiver(), 0] = True
        for r in reversed(range(len(self.receivers))):
            rec = self.receivers[r]
            if rec.input in ("q", "mlp"):
                recv_live[r] = out_live[self.sender_of(rec)]
            elif rec.input != "logits":  # keys and values at every real position
                recv_live[r] = real & out_live[self.sender_of(rec)].any()
            out_live |= self.upstream[r, :, None] & recv_live[r][None, :]
        return self.upstream[:, :, None] & recv_live[:, None, :] & real

    def sender_of(self, receiver: Receiver) -> int:
        """The sender index of the component a receiver input belongs to."""
        for i, s in enumerate(self.senders):
            same = s.layer == receiver.layer and s.head == receiver.head and s.kind != "embed"
            if same and (s.kind == "head") == (receiver.head is not None):
                return i
        raise ValueError(receiver)

    def node_edges(self, kept: Bool[Tensor, " component"]) -> Bool[Tensor, "receiver sender"]:
        """The component-level edges between kept components (``kept`` over the heads and
        MLPs in sender order, the embeddings and logits always kept)."""
        alive = torch.cat([torch.ones(1, dtype=torch.bool), kept])
        recv_alive = torch.tensor(
            [r.input == "logits" or bool(alive[self.sender_of(r)]) for r in self.receivers]
        )
        return self.upstream & recv_alive[:, None] & alive[None, :]
