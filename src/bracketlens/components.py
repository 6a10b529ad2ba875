"""Typed identities of the model's parts: a head or an MLP, with its label and hook.

A :class:`Component` names a location once, as a value, so no caller splits
``"L.H"`` / ``"head L.H"`` / ``"mlp L"`` strings apart. Its ``label`` is that text
(``"head 2.0"``, ``"mlp 1"``), which JSON and tables show.

>>> Component.at(2, 0).label, Component.at(2, 0).hook_name
('head 2.0', 'blocks.2.attn.hook_result')
>>> Component.parse("mlp 1") == Component.at(1)
True
>>> Component.parse("2.1").short
'2.1'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bracketlens.errors import BracketLensError
from bracketlens.model.names import act_name

if TYPE_CHECKING:
    from bracketlens.model.config import ModelConfig

Kind = Literal["head", "mlp"]


@dataclass(frozen=True, order=True)
class Component:
    """One head (``kind="head"``, ``head`` set) or one MLP (``kind="mlp"``, ``head`` None)."""

    layer: int
    head: int | None
    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in ("head", "mlp"):
            raise BracketLensError(f"unknown component kind {self.kind!r}: use 'head' or 'mlp'")
        if (self.kind == "head") != (self.head is not None):
            raise BracketLensError("a head component needs a head index; an MLP has none")

    @classmethod
    def at(cls, layer: int, head: int | None = None) -> Component:
        """Head ``layer.head``, or the MLP of ``layer`` when ``head`` is None."""
        return cls(layer, head, "head") if head is not None else cls(layer, None, "mlp")

    @classmethod
    def parse(cls, text: str) -> Component:
        """``"head L.H"``, ``"L.H"`` or ``"mlp L"`` (as labels and roles are written)."""
        kind, _, where = text.strip().rpartition(" ")
        try:
            if kind in ("", "head") and "." in where:
                layer, head = (int(x) for x in where.split("."))
                return cls(layer, head, "head")
            if kind == "mlp":
                return cls(int(where), None, "mlp")
        except ValueError:
            pass
        raise BracketLensError(f"unknown component {text!r}: use 'head L.H', 'L.H' or 'mlp L'")

    @property
    def label(self) -> str:
        """``"head 2.0"`` or ``"mlp 1"``: the name used in tables, JSON and figures."""
        return f"head {self.short}" if self.kind == "head" else f"mlp {self.layer}"

    @property
    def short(self) -> str:
        """``"2.0"`` for a head (as roles are written), ``"mlp 1"`` for an MLP."""
        return f"{self.layer}.{self.head}" if self.kind == "head" else self.label

    @property
    def hook_name(self) -> str:
        """The hook carrying this component's output (a head's is ``[.., head, d_model]``)."""
        if self.kind == "head":
            return act_name("result", self.layer)
        return act_name("mlp_out", self.layer)

    @property
    def z_hook_name(self) -> str:
        """For a head, ``attn.hook_z`` (``[.., head, d_head]``); for an MLP, ``mlp.hook_post``."""
        if self.kind == "head":
            return act_name("z", self.layer)
        return act_name("post", self.layer)

    def check(self, cfg: ModelConfig) -> Component:
        """Return self, or raise :class:`BracketLensError` if the model has no such part."""
        if not 0 <= self.layer < cfg.n_layers:
            raise BracketLensError(
                f"unknown layer {self.layer}: this model has layers 0..{cfg.n_layers - 1}"
            )
        if self.head is not None and not 0 <= self.head < cfg.n_heads:
            raise BracketLensError(
                f"unknown head {self.head}: each layer has heads 0..{cfg.n_heads - 1}"
            )
        return self

    def __str__(self) -> str:
        return self.label


def all_components(cfg: ModelConfig) -> list[Component]:
    """Every head and MLP in forward order: head 0.0, head 0.1, mlp 0, head 1.0, ..."""
    out: list[Component] = []
    for layer in range(cfg.n_layers):
        out += [Component(layer, h, "head") for h in range(cfg.n_heads)]
        out.append(Component(layer, None, "mlp"))
    return out
