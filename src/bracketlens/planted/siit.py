"""Strict interchange intervention training (SIIT): plant a whole circuit.

Each step runs one batched forward pass over four groups of rows and adds a loss
for each (Gupta et al. 2024, InterpBench):

- **task**: strings with their labels (and the source rows' own labels);
- **interchange**: each row patches one planted node (drawn at random) from its
  source row, and the model must give the high-level graph's counterfactual label
  (:func:`~.circuits.counterfactual`);
- **strict**: each row patches every node outside the circuit (each head and MLP
  at each position, :func:`~.circuits.strict_nodes`) with a probability drawn per
  row from 0 to 1, from its source row, and must keep its own label.

Sources have the base's length, so that a node at every position is patched
position for position. A head's node is its ``z`` at those positions (its output is
``z`` times ``W_O``), an MLP's its ``mlp_out``.

:func:`measure` gives what acceptance reads: accuracy, IIA (:func:`.iit.iia_score`,
explain's kind-mean: 0.5 means no effect) at every planted node, and every strict
node's resample effect (mean absolute change of the logit difference over the
strings that have that position), all through :func:`~bracketlens.interventions.run_patched`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.generate import evaluation_set, training_set
from bracketlens.data.tokens import MAX_PARENS
from bracketlens.interventions.hooks import Hook
from bracketlens.interventions.runner import run_patched
from bracketlens.model.names import act_name
from bracketlens.model.predict import evaluate
from bracketlens.model.train import seed_everything
from bracketlens.model.transformer import BracketTransformer
from bracketlens.planted.circuits import CircuitSpec, atoms, counterfactual, rule, strict_nodes
from bracketlens.planted.iit import iia_score

MIN_ACCURACY = 0.99
MIN_IIA = 0.9
#: a strict node's mean |change of the logit difference| when resampled, as a share of
#: the model's mean |logit difference|
STRICT_BOUND = 0.05


@dataclass(frozen=True)
class SIITConfig:
    """The recipe: ``batch_size`` rows in each of the four groups of a step, on
    strings of 2 to ``max_parens`` parens (training and held out)."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    iit_weight: float = 3.0
    strict_weight: float = 1.0
    clip: float = 1.0
    n_train: int = 30_000
    n_eval: int = 1_000
    max_parens: int = MAX_PARENS


@dataclass(frozen=True)
class PlantedCircuit:
    """A model with a planted circuit and its record (accuracy, IIA, strict effects)."""

    model: BracketTransformer
    record: dict[str, object]


# (layer, head or None for the MLP, positions or None for every position)
Site = tuple[int, int | None, tuple[int, ...] | None]


def _site(component: str, positions: tuple[int, ...] | None) -> Site:
    if component.startswith("mlp"):
        return int(component[3:]), None, positions
    layer, head = component.split(".")
    return int(layer), int(head), positions


class Masks:
    """Which (row, position, head) of each layer's ``z`` and (row, position) of each
    ``mlp_out`` take their source row's value."""

    def __init__(self, n_layers: int, n_heads: int, rows: int, width: int) -> None:
        self.z = torch.zeros(n_layers, rows, width, n_heads, dtype=torch.bool)
        self.mlp = torch.zeros(n_layers, rows, width, dtype=torch.bool)

    def set(self, rows: Tensor, site: Site) -> None:
        layer, head, positions = site
        cols = slice(None) if positions is None else list(positions)
        target = self.mlp[layer] if head is None else self.z[layer, :, :, head]
        sub = target[rows]
        sub[:, cols] = True
        target[rows] = sub

    def hooks(self, source_of: Tensor) -> list[tuple[str | Callable[..., Any], Callable[..., Any]]]:
        """Hooks patching the masked entries from row ``source_of[row]`` of the same pass."""

        def make(mask: Tensor) -> Hook:
            def hook(act: Tensor, hook: object) -> Tensor:
                m = mask[:, : act.shape[1]]
                m = m[..., None] if act.dim() == m.dim() + 1 else m
                return torch.where(m, act[source_of], act)

            return hook

        out: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = []
        for layer in range(len(self.z)):
            if self.z[layer].any():
                out.append((act_name("z", layer), make(self.z[layer])))
            if self.mlp[layer].any():
                out.append((act_name("mlp_out", layer), make(self.mlp[layer])))
        return out


def same_length_sampler(lengths: Tensor) -> Callable[[Tensor, torch.Generator], Tensor]:
    """``draw(rows, gen)``: for each row, a random row of the same length."""
    order = torch.argsort(lengths, stable=True)
    values, counts = torch.unique_consecutive(lengths[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    where = torch.full((int(lengths.max()) + 1,), -1)
    where[values] = torch.arange(len(values))

    def draw(rows: Tensor, gen: torch.Generator) -> Tensor:
        g = where[lengths[rows]]
        pick = (torch.rand(len(rows), generator=gen) * counts[g]).long()
        return order[starts[g] + pick]

    return draw


def train_circuit(spec: CircuitSpec, cfg: SIITConfig | None = None) -> PlantedCircuit:
    """Train a model from ``spec.seed`` with the circuit planted where the spec says."""
    cfg = cfg or SIITConfig()
    seed_everything(spec.seed)
    start = time.perf_counter()
    data = _within(training_set(cfg.n_train, seed=spec.seed), cfg.max_parens)
    model = BracketTransformer()
    model.init_weights(seed=spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    gen = torch.Generator().manual_seed(spec.seed)
    step = _Stepper(spec, model, data, cfg, gen)
    for _ in range(cfg.steps):
        loss = step()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        schedule.step()
    model.eval()
    model.requires_grad_(False)
    held_out = held_out_set(cfg, spec.seed + 1_000_003)
    record = {
        "circuit": spec.to_json(),
        "siit_config": asdict(cfg),
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        **measure(model, spec, held_out),
    }
    return PlantedCircuit(model=model, record=record)


class _Stepper:
    """One step's loss: the four groups in one pass (module docstring)."""

    def __init__(
        self,
        spec: CircuitSpec,
        model: BracketTransformer,
        data: BracketDataset,
        cfg: SIITConfig,
        gen: torch.Generator,
    ) -> None:
        self.spec, self.model, self.data, self.cfg, self.gen = spec, model, data, cfg, gen
        tokens = data.tokens.numpy()
        self.atoms = atoms(spec.kind, tokens)
        self.labels = torch.as_tensor(rule(spec.kind, self.atoms)).long()
        self.draw = same_length_sampler(data.seq_length)
        self.planted = [_site(n.component, n.positions) for n in spec.nodes]
        strict = [(_site(c, (p,)), p) for c, p in strict_nodes(spec, model.cfg)]
        # (layer, position, head) of each strict head node; (layer, position) of each MLP's
        self.strict_z = torch.tensor([(s[0], p, s[1]) for s, p in strict if s[1] is not None])
        self.strict_mlp = torch.tensor([(s[0], p) for s, p in strict if s[1] is None])

    def __call__(self) -> Tensor:
        n, gen, cfg = self.cfg.batch_size, self.gen, self.model.cfg
        task, source = (torch.randint(len(self.data), (n,), generator=gen) for _ in range(2))
        base, strict_base = self.draw(source, gen), self.draw(source, gen)
        rows = torch.cat([task, base, strict_base, source])
        width = int(self.data.seq_length[rows].max()) + 2
        tokens = self.data.tokens[rows, :width]
        masks = Masks(cfg.n_layers, cfg.n_heads, 4 * n, width)
        which = torch.randint(len(self.planted), (n,), generator=gen)
        for k, site in enumerate(self.planted):
            masks.set(n + (which == k).nonzero()[:, 0], site)
        share = torch.rand(n, 1, generator=gen)
        rows_s = 2 * n + torch.arange(n)[:, None]
        z, mlp = self.strict_z, self.strict_mlp
        z, mlp = z[z[:, 1] < width], mlp[mlp[:, 1] < width]
        chosen = torch.rand(n, len(z) + len(mlp), generator=gen) < share
        masks.z[z[:, 0], rows_s, z[:, 1], z[:, 2]] = chosen[:, : len(z)]
        masks.mlp[mlp[:, 0], rows_s, mlp[:, 1]] = chosen[:, len(z) :]
        source_of = torch.arange(4 * n)
        source_of[n : 3 * n] = torch.arange(3 * n, 4 * n).repeat(2)
        logits = self.model.run_with_hooks(tokens, fwd_hooks=masks.hooks(source_of))[:, 0]
        want = self._counterfactual(base, source, which)
        return (
            F.cross_entropy(logits[:n], self.labels[task])
            + F.cross_entropy(logits[3 * n :], self.labels[source])
            + self.cfg.iit_weight * F.cross_entropy(logits[n : 2 * n], want)
            + self.cfg.strict_weight
            * F.cross_entropy(logits[2 * n : 3 * n], self.labels[strict_base])
        )

    def _counterfactual(self, base: Tensor, source: Tensor, which: Tensor) -> Tensor:
        out = torch.empty(len(base), dtype=torch.long)
        for k, node in enumerate(self.spec.nodes):
            rows = (which == k).numpy()
            values = {a: v[base.numpy()[rows]].copy() for a, v in self.atoms.items()}
            for a in node.carries:
                values[a] = self.atoms[a][source.numpy()[rows]]
            out[torch.as_tensor(rows)] = torch.as_tensor(rule(self.spec.kind, values)).long()
        return out


def _long_enough(data: BracketDataset) -> BracketDataset:
    """Strings of two or more parens (positions 0 to 3 hold a token)."""
    return data[data.seq_length >= 2]


def _within(data: BracketDataset, max_parens: int) -> BracketDataset:
    """Strings of 2 to ``max_parens`` parens."""
    return _long_enough(data[data.seq_length <= max_parens])


def held_out_set(cfg: SIITConfig, seed: int) -> BracketDataset:
    """About ``cfg.n_eval`` evaluation strings of 2 to ``cfg.max_parens`` parens (drawn
    from enough evaluation strings that the length limit leaves that many)."""
    scale = -(-MAX_PARENS // max(2, cfg.max_parens))
    return _within(evaluation_set(cfg.n_eval * scale, seed=seed), cfg.max_parens)


# --- measurement ---


def _patched(
    model: BracketTransformer,
    tokens: Int[Tensor, "row seq"],
    source: Int[Tensor, "row seq"],
    sites: list[Site],
    cache: dict[str, Tensor] | None = None,
) -> Tensor:
    """Class logits of ``tokens`` with ``sites`` taken from ``source`` (row for row);
    ``cache``: the source's activations (:func:`_source_acts`), if already computed."""
    if cache is None:
        cache = _source_acts(model, source, sites)

    def per_batch(rows: Tensor) -> list[tuple[str, Hook]]:
        hooks: list[tuple[str, Hook]] = []
        for layer, head, positions in sites:
            name = act_name("z" if head is not None else "mlp_out", layer)
            src = cache[name][rows]

            def hook(
                act: Tensor,
                hook: object,
                src: Tensor = src,
                head: int | None = head,
                positions: tuple[int, ...] | None = positions,
            ) -> Tensor:  # the defaults bind this site
                width = act.shape[1]
                cols = (
                    list(range(width)) if positions is None else [p for p in positions if p < width]
                )
                act = act.clone()
                if head is None:
                    act[:, cols] = src[:, cols].to(act.dtype)
                else:
                    act[:, cols, head] = src[:, cols, head].to(act.dtype)
                return act

            hooks.append((name, hook))
        return hooks

    return run_patched(model, tokens, per_batch=per_batch)


def _source_acts(
    model: BracketTransformer, source: Int[Tensor, "row seq"], sites: list[Site]
) -> dict[str, Tensor]:
    """The ``z`` and ``mlp_out`` activations of ``source`` that patching ``sites`` reads."""
    names = sorted({act_name("z" if h is not None else "mlp_out", lay) for lay, h, _ in sites})
    with torch.no_grad():
        _, cache = model.run_with_cache(source, names_filter=names)
    return dict(cache.cache_dict)


def measure(model: BracketTransformer, spec: CircuitSpec, data: BracketDataset) -> dict[str, Any]:
    """Accuracy, IIA at every planted node and every strict node's resample effect."""
    data = _long_enough(data)
    gen = torch.Generator().manual_seed(spec.seed + 7)
    source = data.tokens[same_length_sampler(data.seq_length)(torch.arange(len(data)), gen)]
    base = data.tokens
    labels = data.labels.long()
    clean = run_patched(model, base)
    diff = clean[:, 1] - clean[:, 0]
    iia = {}
    for node in spec.nodes:
        want = torch.as_tensor(counterfactual(spec, node.variable, base.numpy(), source.numpy()))
        logits = _patched(model, base, source, [_site(node.component, node.positions)])
        iia[node.variable] = round(iia_score(logits.argmax(-1), want.long(), labels), 4)
    scale = float(diff.abs().mean())
    effects = {}
    every = [_site(c, (p,)) for c, p in strict_nodes(spec, model.cfg)]
    acts = _source_acts(model, source, every)  # once for every strict node's patch
    for comp, p in strict_nodes(spec, model.cfg):
        real = data.seq_length + 2 > p
        if not real.any():
            continue
        here = {name: act[real] for name, act in acts.items()}
        logits = _patched(model, base[real], source[real], [_site(comp, (p,))], here)
        effects[f"{comp}@{p}"] = float((logits[:, 1] - logits[:, 0] - diff[real]).abs().mean())
    alone = _patched(model, base, source, every, acts).argmax(-1)
    worst = max(effects, key=effects.__getitem__)
    return {
        "accuracy": evaluate(model, data).accuracy,
        "iia": iia,
        "mean_abs_logit_diff": round(scale, 4),
        "strict_bound": round(STRICT_BOUND * scale, 4),
        "strict_worst": {"node": worst, "effect": round(effects[worst], 4)},
        "strict_effects": {k: round(v, 4) for k, v in effects.items()},
        "circuit_alone_accuracy": float((alone == labels).float().mean()),
    }


def accepted(record: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a planted model is ground truth, and the reasons it is not."""
    why = []
    if record["accuracy"] < MIN_ACCURACY:
        why.append(f"accuracy {record['accuracy']:.3f} < {MIN_ACCURACY}")
    low = {k: v for k, v in record["iia"].items() if v < MIN_IIA}
    if low:
        why.append(f"IIA below {MIN_IIA} at {low}")
    worst = record["strict_worst"]
    if worst["effect"] > record["strict_bound"]:
        why.append(
            f"strict node {worst['node']} moves the logit difference by {worst['effect']:.3f}"
            f" > {record['strict_bound']:.3f}"
        )
    return not why, why
