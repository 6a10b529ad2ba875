"""Whole planted circuits: a high-level graph, the nodes it lives in, and its true edges.

A :class:`CircuitSpec` is a high-level causal graph of the balance computation
whose every variable sits in one component (a head or an MLP) at a set of
positions. Two algorithms, each in many layouts:

- ``course``: a tally head in layer 0 writes each suffix's elevation at every
  position; MLP 0 turns it into per-position flags (elevation zero, elevation above
  zero); an *elevation* head reads the zero flag at the read position (0 or 1: the
  suffix there is the whole string) and a *negative* head reads the positive flags
  everywhere, both writing at position 0; the last MLP at position 0 combines them:
  ``elevation_zero AND NOT suffix_positive``.
- ``two_sided``: two layer-0 heads write each prefix's and each suffix's elevation;
  MLP 0 flags a negative prefix and a positive suffix at each position; two readers
  at position 0 gather "some prefix negative" and "some suffix positive"; the last
  MLP combines: ``NOT prefix_negative AND NOT suffix_positive``.

The readers' variables are explain's grammar atoms (``elevation_zero``,
``suffix_positive``, ``prefix_negative``), so the planted IIA and explain's measure
the same variable. The *true edges* (:data:`EDGE_RULE`) are the edges of the
discovery graph that carry a variable of the high-level graph:

- a parent's output into a child head's values, at every position where the
  parent's value can differ between two strings of one length (the pairs discovery
  patches from have one length): a head's queries and keys choose the positions
  it reads, and the high-level graph fixes those by position (a tally its prefix or
  suffix, a reader position 0, its read position or every position), so they carry
  no variable;
- a parent's output into a child MLP at the MLP's own positions;
- the combining node into the logits at position 0.

Strict interchange intervention training constrains nodes, not edges, and a node at
several positions is interchanged at all of them at once: a planted head may read
its parent at any of them, so its true edges do not follow ``reads``. A hand-built
circuit (``built``) reads exactly where it was built to, and its true edges do.
The tokens differ only at the parens: [start] and the last position (which only
ever holds [end] or padding) carry nothing, nor does a prefix tally at [start] or a
suffix tally at the last position.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from bracketlens.algorithms.grammar import CANDIDATE_ATOMS, Tokens
from bracketlens.data.tokens import N_CTX
from bracketlens.discovery.graph import Graph
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import ModelConfig

KINDS = ("course", "two_sided")
RULE_ATOMS = {
    "course": ("elevation_zero", "suffix_positive"),
    "two_sided": ("prefix_negative", "suffix_positive"),
}
ALL = None  # a node at every position
EDGE_RULE = (
    "the edges that carry a variable of the high-level graph: a parent's output into a "
    "child head's values at every position where the parent's value can differ between "
    "two strings of one length (a hand-built circuit: where it reads), into a child MLP "
    "at its own positions, and the combining node into the logits. A head's queries and "
    "keys choose positions, which the high-level graph fixes, so they carry no variable; "
    "SIIT constrains nodes, not edges, so a planted head may read its parent at any of "
    "the parent's positions"
)


@dataclass(frozen=True)
class HighNode:
    """One high-level variable and where it is planted.

    Attributes:
        variable: its name (a grammar atom for the readers).
        component: ``"L.H"`` or ``"mlpL"``.
        positions: the positions its value sits at (None: every position).
        parents: the variables it reads (none: the tokens).
        reads: the positions it reads its parents at (None: every position).
        carries: the rule atoms whose value it determines: an interchange here sets
            those atoms to the source's.
    """

    variable: str
    component: str
    positions: tuple[int, ...] | None
    parents: tuple[str, ...]
    reads: tuple[int, ...] | None
    carries: tuple[str, ...]

    @property
    def layer(self) -> int:
        return int(self.component[3:]) if self.is_mlp else int(self.component.split(".")[0])

    @property
    def head(self) -> int | None:
        return None if self.is_mlp else int(self.component.split(".")[1])

    @property
    def is_mlp(self) -> bool:
        return self.component.startswith("mlp")

    @property
    def label(self) -> str:
        p = self.positions
        if p is None:
            where = "every position"
        else:
            where = f"@{p[0]}" if len(p) == 1 else f"@{p[0]}..{p[-1]}"
        return f"{self.variable} in {self.component} {where}"


@dataclass(frozen=True)
class CircuitSpec:
    """One circuit: the algorithm, its nodes in forward order, and the seed.

    ``built``: the weights were set by hand (the compiled model), so each head reads
    exactly its ``reads`` positions; a trained circuit's heads may read their parents
    at any of the parents' positions.
    """

    name: str
    kind: str
    nodes: tuple[HighNode, ...]
    seed: int
    built: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BracketLensError(f"unknown circuit kind {self.kind!r}; use one of {KINDS}")

    def node(self, variable: str) -> HighNode:
        return next(n for n in self.nodes if n.variable == variable)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "seed": self.seed,
            "nodes": [asdict(n) for n in self.nodes],
            "built": self.built,
        }

    @classmethod
    def from_json(cls, row: dict[str, object]) -> CircuitSpec:
        nodes = []
        for n in row["nodes"]:  # type: ignore[attr-defined]
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in n.items()}
            nodes.append(HighNode(**fields))  # type: ignore[arg-type]
        built = bool(row.get("built", False))
        return cls(str(row["name"]), str(row["kind"]), tuple(nodes), int(row["seed"]), built)  # type: ignore[call-overload]


def course(
    name: str, tally: int, elevation: str, negative: str, read: int, seed: int, n_layers: int = 3
) -> CircuitSpec:
    """The course's algorithm with the tally in head ``0.tally`` and the readers where given."""
    last = f"mlp{n_layers - 1}"
    atoms = RULE_ATOMS["course"]
    nodes = (
        HighNode("suffix_tally", f"0.{tally}", ALL, (), ALL, atoms),
        HighNode("suffix_flags", "mlp0", ALL, ("suffix_tally",), ALL, atoms),
        HighNode("elevation_zero", elevation, (0,), ("suffix_flags",), (read,), atoms[:1]),
        HighNode("suffix_positive", negative, (0,), ("suffix_flags",), ALL, atoms[1:]),
        HighNode("balanced", last, (0,), atoms, (0,), atoms),
    )
    return CircuitSpec(name, "course", nodes, seed)


def two_sided(
    name: str, prefix_head: int, prefix: str, suffix: str, seed: int, n_layers: int = 3
) -> CircuitSpec:
    """ "Some prefix negative" and "some suffix positive", each read by its own head."""
    last = f"mlp{n_layers - 1}"
    atoms = RULE_ATOMS["two_sided"]
    nodes = (
        HighNode("prefix_tally", f"0.{prefix_head}", ALL, (), ALL, atoms[:1]),
        HighNode("suffix_tally", f"0.{1 - prefix_head}", ALL, (), ALL, atoms[1:]),
        HighNode("flags", "mlp0", ALL, ("prefix_tally", "suffix_tally"), ALL, atoms),
        HighNode("prefix_negative", prefix, (0,), ("flags",), ALL, atoms[:1]),
        HighNode("suffix_positive", suffix, (0,), ("flags",), ALL, atoms[1:]),
        HighNode("balanced", last, (0,), atoms, (0,), atoms),
    )
    return CircuitSpec(name, "two_sided", nodes, seed)


def compiled_spec() -> CircuitSpec:
    """The hand-compiled model's circuit, from its construction (:mod:`bracketlens.compiled`):
    heads 0.0 and 0.1 tally the suffixes at positions 1-20 and 21-41 (so 0.1 reads
    positions 21 on), MLP 0 tests each, head 2.0 reads the test at position 1, head 2.1
    averages the others, and the unembedding combines them (layer 1 and MLP 2 are
    empty)."""
    atoms = RULE_ATOMS["course"]
    short, long = tuple(range(1, 21)), tuple(range(21, N_CTX))
    nodes = (
        HighNode("suffix_tally_short", "0.0", short, (), ALL, atoms),
        HighNode("suffix_tally_long", "0.1", long, (), long, atoms),
        HighNode(
            "suffix_flags", "mlp0", ALL, ("suffix_tally_short", "suffix_tally_long"), ALL, atoms
        ),
        HighNode("elevation_zero", "2.0", (0,), ("suffix_flags",), (1,), atoms[:1]),
        HighNode("suffix_positive", "2.1", (0,), ("suffix_flags",), ALL, atoms[1:]),
    )
    return CircuitSpec("compiled", "course", nodes, seed=0, built=True)


def draw_circuits(seed: int) -> list[CircuitSpec]:
    """Six circuits: the course's layout, three course layouts drawn at random (the
    elevation head in layer 1 in two), and two two-sided ones; heads and read
    positions drawn with ``seed``."""
    rng = np.random.default_rng(seed)

    def pick(k: int) -> int:
        return int(rng.integers(k))

    out = [course("course-0", 0, "2.0", "2.1", read=1, seed=seed * 1000)]
    for i, layers in enumerate(((1, 2), (1, 1), (2, 2)), start=1):
        a = pick(2)
        heads = (a, 1 - a) if layers[0] == layers[1] else (pick(2), pick(2))
        elevation, negative = f"{layers[0]}.{heads[0]}", f"{layers[1]}.{heads[1]}"
        out.append(course(f"course-{i}", pick(2), elevation, negative, pick(2), seed * 1000 + i))
    for i, layers in enumerate(((1, 2), (2, 1)), start=4):
        prefix, suffix = f"{layers[0]}.{pick(2)}", f"{layers[1]}.{pick(2)}"
        out.append(two_sided(f"two-sided-{i}", pick(2), prefix, suffix, seed * 1000 + i))
    return out


def write_circuits(specs: Sequence[CircuitSpec], path: str | os.PathLike[str]) -> Path:
    """Write ``suite.json`` (specs, true nodes and true edges), refusing to replace one."""
    path = Path(path)
    if path.exists():
        raise BracketLensError(f"suite file {path} exists; its circuits are fixed, reuse it")
    graph = Graph.of(ModelConfig())
    rows = []
    for s in specs:
        rows.append(
            s.to_json()
            | {
                "true_nodes": true_components(s),
                "true_edges": true_edge_names(s, graph),
                "edge_rule": EDGE_RULE,
                "rule": rule_text(s.kind),
            }
        )
    path.write_text(json.dumps(rows, indent=1))
    return path


def written_edges(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Each circuit's true edges as ``suite.json`` recorded them (its specs give them
    again by :func:`true_edges`; a file written under another edge rule differs)."""
    rows = json.loads(Path(path).read_text())
    return {str(row["name"]): list(row.get("true_edges", [])) for row in rows}


def read_circuits(path: str | os.PathLike[str]) -> list[CircuitSpec]:
    """The circuit specs of a ``suite.json``."""
    try:
        return [CircuitSpec.from_json(row) for row in json.loads(Path(path).read_text())]
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
        raise BracketLensError(f"{path} is not a readable circuit suite file ({e})") from None


def rule_text(kind: str) -> str:
    a, b = RULE_ATOMS[kind]
    return f"{a} AND NOT {b}" if kind == "course" else f"NOT {a} AND NOT {b}"


def true_edge_names(spec: CircuitSpec, graph: Graph) -> list[str]:
    """The true edges, named ``sender->receiver[.input]@position`` as ``suite.json`` has them."""
    out = []
    for r, s, p in true_edges(spec, graph).nonzero().tolist():
        rec = graph.receivers[r]
        inp = "" if rec.input in ("mlp", "logits") else f".{rec.input}"
        out.append(f"{graph.senders[s].name}->{rec.name}{inp}@{p}")
    return out


# --- the high-level model ---


def atoms(kind: str, tokens: Tokens) -> dict[str, np.ndarray]:
    """The rule atoms of every string (explain's grammar computes them)."""
    by_name = {a.name: a for a in CANDIDATE_ATOMS}
    return {name: by_name[name].compute(tokens) for name in RULE_ATOMS[kind]}


def rule(kind: str, values: dict[str, np.ndarray]) -> np.ndarray:
    """Balanced (True) from the rule atoms."""
    a, b = (values[n].astype(bool) for n in RULE_ATOMS[kind])
    return a & ~b if kind == "course" else ~a & ~b


def counterfactual(spec: CircuitSpec, variable: str, base: Tokens, source: Tokens) -> np.ndarray:
    """The label (True: balanced) after ``variable`` is interchanged from ``source``."""
    values = atoms(spec.kind, base)
    theirs = atoms(spec.kind, source)
    for atom in spec.node(variable).carries:
        values[atom] = theirs[atom]
    return rule(spec.kind, values)


# --- true nodes, true edges, strict nodes ---


def true_components(spec: CircuitSpec) -> list[str]:
    """The components of the circuit, as the discovery graph names them."""
    return sorted({n.component for n in spec.nodes})


def _at(positions: tuple[int, ...] | None, width: int) -> list[int]:
    return list(range(width)) if positions is None else [p for p in positions if p < width]


def _varies(node: HighNode | None, width: int) -> set[int]:
    """The positions where ``node``'s value (None: the tokens') can differ between two
    strings of one length, on tokens ``width`` wide (the longest string and its [start]
    and [end]): the parens for the tokens; a tally's positions but the one whose prefix
    or suffix is empty; every position of any other node."""
    if node is None:
        return set(range(1, width - 1))
    at = set(_at(node.positions, width))
    if not node.parents:
        at -= {0} if node.variable.startswith("prefix") else {width - 1}
    return at


def true_edges(spec: CircuitSpec, graph: Graph, width: int = N_CTX) -> Bool[Tensor, "r s pos"]:
    """The position-level edges that carry a variable of the high-level graph
    (:data:`EDGE_RULE`, module docstring)."""
    out = torch.zeros(len(graph.receivers), len(graph.senders), width, dtype=torch.bool)
    sender = {s.name: i for i, s in enumerate(graph.senders)}
    for node in spec.nodes:
        parents: list[HighNode | None] = [spec.node(p) for p in node.parents] or [None]
        own = set(_at(node.positions, width))
        read = set(_at(node.reads, width)) if spec.built else set(range(width))
        r = graph.receivers_of(node.layer, "mlp" if node.is_mlp else "v")[node.head or 0]
        for parent in parents:
            s = sender["embed"] if parent is None else sender[parent.component]
            at = _varies(parent, width) & (own if node.is_mlp else read)
            out[r, s, sorted(at)] = True
    for top in _tops(spec):
        out[graph.logits_receiver(), sender[top.component], 0] = True
    return out & graph.upstream[:, :, None]


def _tops(spec: CircuitSpec) -> list[HighNode]:
    """The nodes the logits read: the combining node, or else the rule atoms' readers."""
    combine = [n for n in spec.nodes if n.variable == "balanced"]
    return combine or [n for n in spec.nodes if n.variable in RULE_ATOMS[spec.kind]]


def strict_nodes(spec: CircuitSpec, cfg: ModelConfig, width: int = N_CTX) -> list[tuple[str, int]]:
    """Every (component, position) outside the circuit that can change the answer: each
    head and MLP at each position, the last layer at position 0 only (the logits read
    position 0 and the last layer computes nothing else)."""
    inside = {(n.component, p) for n in spec.nodes for p in _at(n.positions, width)}
    comps = [f"{layer}.{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    comps += [f"mlp{layer}" for layer in range(cfg.n_layers)]
    out = []
    for comp in comps:
        layer = int(comp[3:]) if comp.startswith("mlp") else int(comp.split(".")[0])
        positions = [0] if layer == cfg.n_layers - 1 else range(width)
        out += [(comp, p) for p in positions if (comp, p) not in inside]
    return out


def strict_edges(spec: CircuitSpec, graph: Graph, width: int = N_CTX) -> Bool[Tensor, "r s pos"]:
    """The position-level edges out of a strict node, or into a component outside the
    circuit (what SIIT trains to carry nothing)."""
    strict = set(strict_nodes(spec, ModelConfig(n_layers=graph.n_layers, n_heads=graph.n_heads),
                              width))  # fmt: skip
    inside = set(true_components(spec))
    out = torch.zeros(len(graph.receivers), len(graph.senders), width, dtype=torch.bool)
    for s, snd in enumerate(graph.senders):
        for p in range(width):
            if (snd.name, p) in strict:
                out[:, s, p] = True
    for r, rec in enumerate(graph.receivers):
        if rec.input != "logits" and rec.name not in inside:
            out[r] = True
    return out & graph.upstream[:, :, None]
