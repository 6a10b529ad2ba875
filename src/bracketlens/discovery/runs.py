"""The runs circuit discovery measures with: sender outputs, the metric, patched circuits.

The metric ``m`` of a row is the logit difference (balanced - unbalanced) at position
0, signed towards the clean string's label. A circuit is scored by patching every
edge outside it (:mod:`bracketlens.interventions.edges`) on every row at once: rows
are (circuit, pair) combinations run through :func:`~bracketlens.interventions.run_patched`,
and the counterfactual sender outputs are computed once and reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.data.tokens import PAD
from bracketlens.discovery.graph import Graph
from bracketlens.discovery.pairs import Pairs
from bracketlens.errors import BracketLensError
from bracketlens.interventions.edges import EdgeSites, edge_hooks, split_inputs, stack_outputs
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.runner import run_patched
from bracketlens.model.names import act_name
from bracketlens.model.predict import iter_batches
from bracketlens.model.transformer import BracketTransformer

ABLATIONS = ("counterfactual", "mean", "resample")
CIRCUITS_PER_RUN = 8  # circuits patched in one run_patched call (bounds the tiled tokens)


def sites_of(graph: Graph) -> EdgeSites:
    """The hooks of a graph's senders and receivers."""
    receivers: list[tuple[str, tuple[int, ...], bool]] = []
    for layer in range(graph.n_layers):
        for kind in ("q", "k", "v"):
            receivers.append(
                (act_name(f"{kind}_input", layer), tuple(graph.receivers_of(layer, kind)), True)
            )
        receivers.append(
            (act_name("mlp_in", layer), tuple(graph.receivers_of(layer, "mlp")), False)
        )
    last = graph.logits_receiver()
    receivers.append((act_name("resid_post", graph.n_layers - 1), (last,), False))
    senders = tuple((s.hook, s.head) for s in graph.senders)
    return EdgeSites(senders, tuple(receivers), frozenset({last}))


@torch.no_grad()
def sender_outputs(
    model: BracketTransformer, sites: EdgeSites, tokens: Int[Tensor, "row seq"]
) -> Float[Tensor, "row sender seq d_model"]:
    """Every sender's output at every position of every row (padding included)."""
    names = sorted({name for name, _ in sites.senders})
    shape = (len(tokens), len(sites.senders), tokens.shape[1], model.cfg.d_model)
    out = torch.zeros(shape, dtype=model.W_E.dtype)  # float64 for a float64 model's checks
    for rows, batch in iter_batches(tokens):
        _, cache = model.run_with_cache(batch, names_filter=names)
        out[rows, :, : batch.shape[1]] = stack_outputs(sites, cache.cache_dict)
    return out


def metric(logits: Float[Tensor, "row 2"], sign: Float[Tensor, " row"]) -> Float[Tensor, " row"]:
    """Logit difference (balanced - unbalanced), signed towards the clean label."""
    return sign * (logits[:, 1] - logits[:, 0]).float()


def _resample_tokens(pairs: Pairs, seed: int) -> Int[Tensor, "row seq"]:
    """Each row's counterfactual: another row's clean string of the same length."""
    gen = torch.Generator().manual_seed(seed)
    lengths = (pairs.clean != PAD).sum(-1)
    out = pairs.clean.clone()
    for length in lengths.unique():
        rows = (lengths == length).nonzero()[:, 0]
        out[rows] = pairs.clean[rows[torch.randperm(len(rows), generator=gen)]]
    return out


@dataclass(frozen=True)
class Runs:
    """A model, its graph, the pairs, and the counterfactual outputs edges are patched from.

    Attributes:
        corrupt: the senders' counterfactual outputs, ``[row, sender, seq, d_model]``
            (batch 1 for mean ablation: each position's mean over the real rows there).
        m_model: ``m`` of the whole model on each row.
        m_empty: ``m`` with every edge patched.
    """

    model: BracketTransformer
    graph: Graph
    sites: EdgeSites
    pairs: Pairs
    ablation: str
    corrupt: Tensor
    m_model: Float[Tensor, " row"]
    m_empty: Float[Tensor, " row"]

    @classmethod
    def build(cls, model: BracketTransformer, pairs: Pairs, ablation: str, seed: int) -> Runs:
        if ablation not in ABLATIONS:
            raise BracketLensError(
                f"unknown ablation {ablation!r}: use one of {', '.join(ABLATIONS)}"
            )
        graph = Graph.of(model.cfg)
        sites = sites_of(graph)
        m_model = metric(run_patched(model, pairs.clean), pairs.sign)
        if ablation == "mean":
            outs = sender_outputs(model, sites, pairs.clean)
            real = (pairs.clean != PAD).float()[:, None, :, None]
            corrupt = (outs * real).sum(0, keepdim=True) / real.sum(0, keepdim=True).clamp(min=1)
            runs = cls(model, graph, sites, pairs, ablation, corrupt, m_model, m_model)
            every = torch.ones(1, len(graph.receivers), len(graph.senders), 1)
            return cls(model, graph, sites, pairs, ablation, corrupt, m_model, runs.m(every)[0])
        tokens = pairs.corrupt if ablation == "counterfactual" else _resample_tokens(pairs, seed)
        corrupt = sender_outputs(model, sites, tokens)
        # every edge patched from another string's run is that string's run: each receiver
        # reads the sum of that run's outputs, which is its residual stream
        m_empty = metric(run_patched(model, tokens), pairs.sign)
        return cls(model, graph, sites, pairs, ablation, corrupt, m_model, m_empty)

    @property
    def width(self) -> int:
        return self.pairs.clean.shape[1]

    def m(
        self,
        cut: Float[Tensor, "circuit receiver sender pos"],
        rows: Bool[Tensor, " row"] | None = None,
    ) -> Float[Tensor, "circuit row"]:
        """``m`` of every row (or of ``rows``; NaN elsewhere) with each circuit's ``cut``
        edges patched (1: patched)."""
        picked = torch.arange(len(self.pairs)) if rows is None else rows.nonzero()[:, 0]
        n = len(picked)
        lengths = (self.pairs.clean != PAD).sum(-1)
        out = torch.full((len(cut), len(self.pairs)), float("nan"))
        for first in range(0, len(cut), CIRCUITS_PER_RUN):
            chunk = cut[first : first + CIRCUITS_PER_RUN]
            tokens = self.pairs.clean[picked].repeat(len(chunk), 1)

            def per_batch(at: Tensor, chunk: Tensor = chunk) -> list[tuple[str, Hook]]:
                # the batch's width alone: the runner trims its padding the same way
                width = int(lengths[picked[at % n]].max())
                source = self.corrupt[:, :, :width]
                source = source if len(source) == 1 else source[picked[at % n]]
                edges = chunk[..., :width][at // n]  # a 1-wide position axis stays 1 wide
                return edge_hooks(self.sites, source.expand(len(at), -1, -1, -1), edges)

            with split_inputs(self.model, one_pass=True):
                logits = run_patched(self.model, tokens, per_batch=per_batch)
            sign = self.pairs.sign[picked].repeat(len(chunk))
            out[first : first + len(chunk), picked] = metric(logits, sign).view(len(chunk), n)
        return out

    def faithfulness(
        self, m: Float[Tensor, "circuit row"], rows: Bool[Tensor, " row"] | None = None
    ) -> tuple[Float[Tensor, " circuit"], float]:
        """f of each circuit over ``rows`` (default all), m averaged before the ratio; and
        the denominator m(model) - m(empty)."""
        keep = torch.ones(m.shape[1], dtype=torch.bool) if rows is None else rows
        full, empty = self.m_model[keep].mean(), self.m_empty[keep].mean()
        span = float(full - empty)
        return (m[:, keep].mean(1) - empty) / span, span
