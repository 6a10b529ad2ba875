"""The report's discovery stage: a light :func:`~bracketlens.discovery.discover.discover`
and the sentence comparing its circuit with the course's roles.

The report runs EAP-IG at position level with counterfactual ablation (the command's
defaults) on pairs built from the first :data:`REPORT_STRINGS` strings, beside the other
stages (:mod:`bracketlens.beside`); ``bracketlens discover`` runs on more pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bracketlens.data.dataset import BracketDataset
from bracketlens.discovery.discover import discover
from bracketlens.discovery.graph import Graph
from bracketlens.discovery.result import Discovery
from bracketlens.errors import BracketLensError
from bracketlens.localisation import Localisation
from bracketlens.model.transformer import BracketTransformer

REPORT_STRINGS = 600  # about 300 balanced strings, so about 300 pairs (200 at least)


@dataclass(frozen=True)
class ReportDiscovery:
    """What the report's discovery stage found, or why it found nothing.

    Attributes:
        result: the discovery, or None where the strings gave too few pairs.
        reason: why ``result`` is None.
        n_strings: the strings the pairs were built from.
        components: every component in forward order (``embed`` first, ``logits`` last).
    """

    result: Discovery | None
    reason: str | None
    n_strings: int
    components: tuple[str, ...]

    def to_json(self) -> dict[str, object] | None:
        return (
            None if self.result is None else self.result.to_json() | {"n_strings": self.n_strings}
        )


def report_discovery(
    model: BracketTransformer, data: BracketDataset, *, seed: int = 0
) -> ReportDiscovery:
    """Discovery on the first :data:`REPORT_STRINGS` strings of ``data`` (too few pairs:
    no result, and the reason)."""
    chosen = data[:REPORT_STRINGS]
    names = (*(s.name for s in Graph.of(model.cfg).senders), "logits")
    try:
        found = discover(model, chosen, seed=seed)
    except BracketLensError as error:
        return ReportDiscovery(None, str(error), len(chosen), names)
    return ReportDiscovery(found, None, len(chosen), names)


def _role_names(loc: Localisation) -> dict[str, str]:
    """The course's roles this model's localisation names, as component names the
    discovery uses (``L.H``, ``mlpL``)."""
    out = {}
    for key, finding in (
        ("elevation head", loc.elevation_head),
        ("negative head", loc.negative_head),
        ("tally head", loc.tally_head),
        ("start-close component", loc.start_close_component),
    ):
        if finding.text is None:
            continue
        text = finding.text.removeprefix("head ")
        out[key] = "mlp" + text[4:] if text.startswith("mlp ") else text
    return out


def roles_sentence(d: Discovery, loc: Localisation) -> str:
    """Which of the course's roles the discovered circuit holds, and what else it holds.

    Where no budget reaches f >= 0.95, the node optimum's smallest circuit at 0.95 (or
    its best) is compared instead, and the sentence says so.
    """
    roles = _role_names(loc)
    if d.circuit is not None:
        comps, what = (
            set(d.circuit.components),
            (
                f"The circuit ({d.circuit.n_edges:,} edges, held-out f "
                f"{d.circuit.faithfulness_held_out:.3f})"
            ),
        )
    elif d.optimum is not None:
        at = d.optimum.smallest_at_095 or d.optimum.best
        comps = set(at)
        what = "No edge circuit up to 50% reaches f 0.95; the node optimum's circuit"
    else:
        return f"No circuit was found: {d.circuit_reason or d.faithfulness_reason}."
    held = [f"{k} {v}" for k, v in roles.items() if v in comps]
    missed = [f"{k} {v}" for k, v in roles.items() if v not in comps]
    extra = sorted(comps - set(roles.values()) - {"embed", "logits"})
    parts = [f"{what} holds " + (", ".join(held) if held else "none of the course's roles")]
    if missed:
        parts.append(f"not the {', '.join(missed)}")
    tail = (
        f"beyond the template it holds {', '.join(extra)}"
        if extra
        else "it holds nothing beyond the template"
    )
    return "; ".join(parts) + f"; {tail}."
