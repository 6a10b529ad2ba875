"""What :func:`~bracketlens.discovery.discover` finds, as frozen records with ``to_json``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """f of the top ``n_edges`` edges (``fraction`` of the edges circuits are made of)."""

    fraction: float
    n_edges: int
    faithfulness: float | None


@dataclass(frozen=True)
class EdgeRow:
    """One edge of the circuit: sender -> receiver's ``input`` at ``position`` (None:
    every position, at component level), with its signed score."""

    sender: str
    receiver: str
    input: str
    position: int | None
    score: float


@dataclass(frozen=True)
class Circuit:
    """The reported circuit: chosen on one half of the pairs, scored on the other."""

    edges: tuple[EdgeRow, ...]
    components: tuple[str, ...]
    n_edges: int
    faithfulness: float
    faithfulness_held_out: float

    def to_json(self) -> dict[str, object]:
        return {
            "edges": [vars(e) for e in self.edges],
            "components": list(self.components),
            "n_edges": self.n_edges,
            "faithfulness": self.faithfulness,
            "faithfulness_held_out": self.faithfulness_held_out,
        }


@dataclass(frozen=True)
class SizeRow:
    """The best node-induced circuit of ``size`` components, and the method's own (its
    top ``size`` components by the summed absolute scores of their edges)."""

    size: int
    components: tuple[str, ...]
    faithfulness: float
    method_components: tuple[str, ...]
    method_faithfulness: float

    @property
    def gap(self) -> float:
        return self.faithfulness - self.method_faithfulness


@dataclass(frozen=True)
class Optimum:
    """The exact optimum over node-induced circuits at component level."""

    by_size: tuple[SizeRow, ...]
    best: tuple[str, ...]
    best_faithfulness: float
    smallest_at_095: tuple[str, ...] | None

    def to_json(self) -> dict[str, object]:
        return {
            "by_size": [
                {
                    "size": r.size,
                    "components": list(r.components),
                    "faithfulness": r.faithfulness,
                    "method_components": list(r.method_components),
                    "method_faithfulness": r.method_faithfulness,
                    "gap": r.gap,
                }
                for r in self.by_size
            ],
            "best": {"components": list(self.best), "faithfulness": self.best_faithfulness},
            "smallest_at_095": None if self.smallest_at_095 is None else list(self.smallest_at_095),
        }


@dataclass(frozen=True)
class Discovery:
    """A discovered circuit with its faithfulness curve and the node optimum beside it.

    ``circuit_reason`` says why ``circuit`` is None; ``faithfulness_reason`` why every
    f is (m(model) - m(empty), ``span``, too small). ``by_edit``: f at each budget on
    the rows of each edit kind.
    """

    method: str
    level: str
    ablation: str
    n_pairs: int
    n_dropped: int
    split: dict[str, int]
    budgets: list[Budget]
    cpr: float | None
    cmd: float | None
    n_live_edges: int
    circuit: Circuit | None
    circuit_reason: str | None
    faithfulness_reason: str | None
    optimum: Optimum | None
    by_edit: dict[str, list[float]]
    span: float

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": self.method,
            "level": self.level,
            "ablation": self.ablation,
            "n_pairs": self.n_pairs,
            "n_dropped": self.n_dropped,
            "split": self.split,
            "budgets": [
                vars(b)
                | ({"by_edit": {e: f[i] for e, f in self.by_edit.items()}} if self.by_edit else {})
                for i, b in enumerate(self.budgets)
            ],
            "cpr": self.cpr,
            "cmd": self.cmd,
            "n_live_edges": self.n_live_edges,
            "circuit": None if self.circuit is None else self.circuit.to_json(),
            "optimum": None if self.optimum is None else self.optimum.to_json(),
        }
        if self.faithfulness_reason is not None:
            for key in ("faithfulness", "cpr", "cmd"):
                out[f"{key}_null_reason"] = self.faithfulness_reason
        if self.circuit is None and self.circuit_reason is not None:
            out["circuit_null_reason"] = self.circuit_reason
        if self.optimum is None:
            out["optimum_null_reason"] = self.faithfulness_reason or (
                "more heads and MLPs than the exact optimum enumerates"
            )
        return out
