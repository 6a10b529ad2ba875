"""Find the circuit's roles in any model of this architecture, with evidence.

No head index is assumed: every role is the argmax of a measured score, and each
comes with the scores of the runners-up so that a reader can judge the margin.
Each role is read off what a pass already measured (:mod:`bracketlens.passes`):

- the elevation and negative heads: each head's median contribution to the
  unbalanced direction at position 0, per failure group (the observational pass);
- the read position: the elevation head's attention row from query 0 (same pass);
- the tally head: how opposite a layer-0 head's writes for ``(`` and ``)`` are
  (from the layer-0 fit, which needs no pass) times how evenly it attends to the
  parens after the read position (the observational pass);
- the MLP neurons: the pass at the read position;
- the start-close component: mean ablations, the one interventional role (run by
  :mod:`bracketlens.pipeline` on the held-out strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jaxtyping import Bool
from torch import Tensor

from bracketlens.attribution.components import ComponentStack
from bracketlens.attribution.neurons import rank_neurons
from bracketlens.circuits.elevation import Roles
from bracketlens.circuits.heads import ov_matrix
from bracketlens.circuits.tally import tally_vectors
from bracketlens.components import Component
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.model.names import ln_name
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes import Observation, ReadSlices, layer0_moments

if TYPE_CHECKING:
    from bracketlens.interventions.ablate import AblationEffect

MAX_NEURONS = 12
NEURON_SHARE = 0.2  # a neuron counts if its separation is >= 20% of the largest
TALLY_SCORE = 0.5  # a layer-0 head tallies if max(-cos(vL, vR), 0) x uniformity passes this
START_CLOSE_RISE = 0.01  # the least mean rise of P(balanced) that flags ')' starts
SPECIFICITY = 2.0  # a start-close component matters twice as much for ')...' as for '(...'


@dataclass(frozen=True)
class RoleFinding:
    """One role of the circuit: where it sits, the evidence, and how sure we are.

    Attributes:
        role: what the component does.
        location: the head or MLP, or the position, found in the role; None if none passes.
        evidence: the measured scores (the winner's and the runners-up), keyed by their text.
        confidence: 1 - runner-up score / winner score, clipped to [0, 1].
        candidate: the best-scoring component even when it fails the role's test.
        any_component: the role may be held by a head or an MLP, so a component is
            written as its label (``"head 2.1"``, ``"mlp 0"``), not as ``"L.H"``.
    """

    role: str
    location: Component | int | None
    evidence: dict[str, float]
    confidence: float
    candidate: Component | int | None = None
    any_component: bool = False

    @property
    def found(self) -> bool:
        return self.location is not None

    @property
    def text(self) -> str | None:
        """The location as JSON and tables write it: ``"2.0"`` for a head role, a
        component's label (``"head 2.1"``, ``"mlp 0"``) for a role any component may
        hold, the position's number for the read position; None where none was found."""
        if isinstance(self.location, Component):
            return self.location.label if self.any_component else self.location.short
        return None if self.location is None else str(self.location)

    def component(self) -> Component:
        """The head or MLP found in this role."""
        if not isinstance(self.location, Component):
            raise BracketLensError(f"no component was found for the role {self.role!r}")
        return self.location

    def layer_head(self) -> tuple[int, int]:
        """``(layer, head)`` of a head found in this role (``"L.H"``)."""
        found = self.component()
        if found.head is None:
            raise BracketLensError(f"the role {self.role!r} is held by {found.label}, not a head")
        return found.layer, found.head

    def position(self) -> int:
        """The position found in this role (the read position)."""
        if not isinstance(self.location, int):
            raise BracketLensError(f"no position was found for the role {self.role!r}")
        return self.location

    def to_json(self) -> dict[str, object]:
        """Location, confidence (4 decimals) and evidence (6 decimals)."""
        return {
            "location": self.text,
            "confidence": round(self.confidence, 4),
            "evidence": {k: round(v, 6) for k, v in self.evidence.items()},
        }


ROLE_NAMES = (
    "elevation_head",
    "negative_head",
    "read_position",
    "tally_head",
    "start_close_component",
)


@dataclass(frozen=True)
class Localisation:
    """Every role found in a model."""

    elevation_head: RoleFinding
    negative_head: RoleFinding
    read_position: RoleFinding
    tally_head: RoleFinding
    mlp_neurons: list[str]
    neuron_evidence: dict[str, float]
    start_close_component: RoleFinding

    def negative(self, data: BracketDataset | None = None) -> tuple[int, int] | None:
        """``(layer, head)`` of the negative head, or None where none was found.

        Given ``data``, also None where no string of it goes negative: there is nothing
        to measure the head on.
        """
        return _negative(self.negative_head, data)

    def roles(self) -> Roles:
        """The roles as the elevation analysis takes them.

        Where no layer-0 head passes the tally test, its best candidate stands in (the
        analysis then reports how far it is from a tally).
        """
        if not (self.elevation_head.found and self.read_position.found):
            raise BracketLensError("the elevation circuit was not found in this model")
        layer, head = self.elevation_head.layer_head()
        tally = self.tally_head.location or self.tally_head.candidate
        tally_head = tally.head if isinstance(tally, Component) else None
        return Roles(layer, head, self.read_position.position(), tally_head or 0)

    def to_json(self) -> dict[str, object]:
        """Each role's finding, the MLP neurons and their separations."""
        return {
            **{name: getattr(self, name).to_json() for name in ROLE_NAMES},
            "mlp_neurons": self.mlp_neurons,
            "neuron_separation": {k: round(v, 6) for k, v in self.neuron_evidence.items()},
        }


@dataclass(frozen=True)
class HeadRoles:
    """The roles read off the observational pass (all but the neurons and start-close)."""

    elevation_head: RoleFinding
    negative_head: RoleFinding
    read_position: RoleFinding
    tally_head: RoleFinding

    def negative(self, data: BracketDataset | None = None) -> tuple[int, int] | None:
        """As :meth:`Localisation.negative`."""
        return _negative(self.negative_head, data)

    def roles(self) -> Roles:
        none = RoleFinding("flags strings starting with ')'", None, {}, 0.0, any_component=True)
        return self.complete(Neurons([], {}), none).roles()

    def complete(self, neurons: Neurons, start_close: RoleFinding) -> Localisation:
        """The whole localisation, once the neurons and the start-close role are found."""
        return Localisation(
            self.elevation_head,
            self.negative_head,
            self.read_position,
            self.tally_head,
            neurons.names,
            neurons.evidence,
            start_close,
        )


@dataclass(frozen=True)
class Neurons:
    """The MLP neurons feeding the elevation head, and each one's separation."""

    names: list[str]
    evidence: dict[str, float]


def _negative(finding: RoleFinding, data: BracketDataset | None) -> tuple[int, int] | None:
    if not finding.found or (data is not None and not data.failure_types.negative.any()):
        return None
    return finding.layer_head()


def _confidence(scores: dict[str, float], winner: str) -> float:
    best = scores[winner]
    rest = [v for k, v in scores.items() if k != winner]
    if best <= 0:
        return 0.0
    return float(min(max(1 - max(rest, default=0.0) / best, 0.0), 1.0))


def group_medians(stack: ComponentStack, data: BracketDataset) -> dict[str, dict[str, float]]:
    """Median centred contribution of each head per failure group, in balanced-sd units."""
    groups = data.failure_groups
    out: dict[str, dict[str, float]] = {}
    for i, label in enumerate(stack.labels):
        if not label.startswith("head"):
            continue
        sd = float(stack.values[i, data.labels].std().clamp(min=1e-6))
        out[label.removeprefix("head ")] = {
            g.label: float(stack.values[i, groups == g].median()) / sd
            for g in (FailureGroup.ELEVATION_ONLY, FailureGroup.NEGATIVE_ONLY)
            if (groups == g).any()
        }
    return out


def _pick_heads(medians: dict[str, dict[str, float]]) -> tuple[RoleFinding, RoleFinding]:
    elev = {h: m.get(FailureGroup.ELEVATION_ONLY.label, 0.0) for h, m in medians.items()}
    neg = {h: m.get(FailureGroup.NEGATIVE_ONLY.label, 0.0) for h, m in medians.items()}
    e_best, n_best = max(elev, key=elev.__getitem__), max(neg, key=neg.__getitem__)
    if e_best == n_best:  # one head wins both: it takes the role it wins by more
        if _confidence(elev, e_best) >= _confidence(neg, n_best):
            n_best = max((h for h in neg if h != e_best), key=neg.__getitem__)
        else:
            e_best = max((h for h in elev if h != n_best), key=elev.__getitem__)
    return (
        RoleFinding("total-elevation test", _head(e_best), elev, _confidence(elev, e_best)),
        RoleFinding("negative (anywhere) test", _head(n_best), neg, _confidence(neg, n_best)),
    )


def _read_position(seen: Observation, opens: Bool[Tensor, " batch"], elevation: RoleFinding):
    layer, head = elevation.layer_head()
    row = seen.attention_from_0[opens, layer, head].mean(0)
    scores = {str(k): float(row[k]) for k in range(1, len(row))}  # position 0 is itself
    best = max(scores, key=scores.__getitem__)
    confidence = _confidence(scores, best)
    return RoleFinding("position the elevation head reads", int(best), scores, confidence)


def _tally_head(
    model: BracketTransformer, seen: Observation, data: BracketDataset, rows: Tensor, read: int
) -> RoleFinding:
    """Layer-0 head whose '(' and ')' writes oppose and whose attention is spread evenly."""
    fit = layer0_moments(model, data.tokens).fit(layernorm=ln_name(0), position=None)
    scores: dict[str, float] = {}
    evidence: dict[str, float] = {}
    for head in range(model.cfg.n_heads):
        cos = tally_vectors(model, data.tokens, head, fit=fit).cosine
        spread = float(seen.suffix_uniformity[rows, head, read].mean())
        scores[f"0.{head}"] = max(-cos, 0.0) * spread
        evidence |= {f"0.{head} cos(vL,vR)": cos, f"0.{head} uniformity": spread}
    best = max(scores, key=scores.__getitem__)
    return RoleFinding(
        "tallies the parens after the read position",
        _head(best) if scores[best] > TALLY_SCORE else None,
        evidence | {f"{k} score": v for k, v in scores.items()},
        _confidence(scores, best),
        candidate=_head(best),
    )


def locate_heads(
    model: BracketTransformer,
    seen: Observation,
    data: BracketDataset,
    rows: Bool[Tensor, " batch"],
    attribution: ComponentStack,
) -> HeadRoles:
    """The head roles from the observational pass, on the strings in ``rows``.

    Args:
        attribution: every component at position 0 in the unbalanced direction
            (fitted on ``rows``), over every string of ``data``, uncentred.
    """
    fit_data = data[rows]
    if not fit_data.labels.any() or fit_data.labels.all():
        raise BracketLensError("localisation needs balanced and unbalanced strings")
    stack = ComponentStack(attribution.values[:, rows], attribution.labels, attribution.bias)
    elevation, negative = _pick_heads(group_medians(stack.centred(fit_data.labels), fit_data))
    read = _read_position(seen, rows & data.starts_open, elevation)
    tally = _tally_head(model, seen, fit_data, rows, read.position())
    return HeadRoles(elevation, negative, read, tally)


def locate_neurons(
    model: BracketTransformer,
    read: ReadSlices,
    data: BracketDataset,
    rows: Bool[Tensor, " batch"],
    roles: Roles,
    pre_direction: Tensor,
) -> tuple[list[str], dict[str, float]]:
    """The MLP neurons that feed the elevation head most, from the pass at the read position
    (none when the strings of ``rows`` that start with '(' are all of one label).

    Args:
        read: the pass's groups are the split: group 0 holds ``rows``.
        pre_direction: the unbalanced direction before ``ln_final``.
    """
    ov = ov_matrix(model, roles.elevation_layer, roles.elevation_head)
    direction = read.read_fit([0]).pull_back(ov @ pre_direction)
    opens = rows & data.starts_open
    labels = data.labels[opens]
    if labels.all() or not labels.any():  # nothing to separate: no neuron is found
        return [], {}
    ranks = []
    for layer in range(roles.elevation_layer):
        contrib = read.neuron_contributions(model, layer, direction)[opens]
        ranks += rank_neurons(contrib, labels, layer)
    if not ranks:  # an elevation head in layer 0 has no MLP before it
        return [], {}
    ranks.sort(key=lambda r: -abs(r.separation))
    top = abs(ranks[0].separation)
    chosen = [r for r in ranks if abs(r.separation) >= NEURON_SHARE * top][:MAX_NEURONS]
    return [r.name for r in chosen], {r.name: r.separation for r in ranks[: MAX_NEURONS * 2]}


def locate_start_close(
    ablations: list[AblationEffect], base: Tensor, data: BracketDataset
) -> RoleFinding:
    """The component whose mean ablation raises P(balanced) most on strings starting with ')'.

    Only a component that matters *specifically* for those strings counts: its rise
    there must be at least SPECIFICITY times its rise on unbalanced strings starting
    with '('. Without that test any component the whole circuit needs (a tally head
    whose ablation hides every failure, as in the compiled model) would be named.
    Candidates are tried in order of their rise until one passes.

    Args:
        ablations: mean ablation of every component on ``data``.
        base: P(balanced) of every string of ``data`` without ablation.
    """
    role = "flags strings starting with ')'"
    closes = ~data.starts_open & (data.seq_length > 0)
    opens = data.starts_open & ~data.labels
    if not closes.any():
        return RoleFinding(role, None, {}, 0.0, any_component=True)
    rise = {a.component: float((a.p_balanced - base)[closes].mean()) for a in ablations}
    evidence = dict(rise)
    for a in sorted(ablations, key=lambda a: -rise[a.component]):
        if rise[a.component] <= START_CLOSE_RISE:
            break
        elsewhere = float((a.p_balanced - base)[opens].mean()) if opens.any() else 0.0
        evidence[f"{a.component} on unbalanced strings starting with '('"] = elsewhere
        if rise[a.component] >= SPECIFICITY * max(elsewhere, 0.0):
            confidence = _confidence(rise, a.component)
            found = Component.parse(a.component)
            return RoleFinding(role, found, evidence, confidence, any_component=True)
    best = max(rise, key=rise.__getitem__)
    confidence = _confidence(rise, best)
    return RoleFinding(
        role, None, evidence, confidence, candidate=Component.parse(best), any_component=True
    )


def _head(text: str) -> Component:
    return Component.parse(text)


__all__ = [
    "HeadRoles",
    "Localisation",
    "RoleFinding",
    "group_medians",
    "locate_heads",
    "locate_neurons",
    "locate_start_close",
]
