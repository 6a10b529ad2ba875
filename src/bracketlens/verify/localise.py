"""Find the circuit's roles in any model of this architecture, with evidence.

No head index is assumed: every role is the argmax of a measured score, and each
comes with the scores of the runners-up so that a reader can judge the margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from bracketlens.attribution.components import ComponentStack, unbalanced_attribution
from bracketlens.attribution.directions import unbalanced_direction_pre_ln
from bracketlens.attribution.neurons import out_by_neuron_in_direction, rank_neurons
from bracketlens.circuits.elevation import Roles
from bracketlens.circuits.heads import attention_patterns, head_input_direction
from bracketlens.circuits.tally import tally_vectors
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import predict_proba
from bracketlens.model.transformer import BracketTransformer
from bracketlens.verify.ablate import ablate, component_names

MAX_NEURONS = 12
NEURON_SHARE = 0.2  # a neuron counts if its separation is >= 20% of the largest
SPECIFICITY = 2.0  # a start-close component matters twice as much for ')...' as for '(...'


@dataclass(frozen=True)
class RoleFinding:
    """One role of the circuit: where it sits, the evidence, and how sure we are.

    Attributes:
        role: what the component does.
        location: ``"L.H"`` for a head, ``"mlp L"``, a position as a string, or None.
        evidence: the measured scores (the winner's and the runners-up).
        confidence: 1 - runner-up score / winner score, clipped to [0, 1].
        candidate: the best-scoring component even when it fails the role's test.
    """

    role: str
    location: str | None
    evidence: dict[str, float]
    confidence: float
    candidate: str | None = None

    @property
    def found(self) -> bool:
        return self.location is not None

    def layer_head(self) -> tuple[int, int]:
        """``(layer, head)`` of a head found in this role (``"L.H"``)."""
        if self.location is None:
            raise BracketLensError(f"no component was found for the role {self.role!r}")
        layer, head = (int(x) for x in self.location.split("."))
        return layer, head


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

    def roles(self) -> Roles:
        """The roles as the elevation analysis takes them.

        Where no layer-0 head passes the tally test, its best candidate stands in (the
        analysis then reports how far it is from a tally).
        """
        if not (self.elevation_head.found and self.read_position.found):
            raise BracketLensError("the elevation circuit was not found in this model")
        layer, head = self.elevation_head.layer_head()
        tally = int(str(self.tally_head.location or self.tally_head.candidate).split(".")[1])
        return Roles(layer, head, int(str(self.read_position.location)), tally)


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
        RoleFinding("total-elevation test", e_best, elev, _confidence(elev, e_best)),
        RoleFinding("negative (anywhere) test", n_best, neg, _confidence(neg, n_best)),
    )


def _read_position(
    model: BracketTransformer, data: BracketDataset, elevation: RoleFinding
) -> RoleFinding:
    layer, head = elevation.layer_head()
    opens = data[data.starts_open]
    row = attention_patterns(model, opens.tokens, layer, head)[:, 0].mean(0)
    scores = {str(k): float(row[k]) for k in range(1, len(row))}  # position 0 is itself
    best = max(scores, key=scores.__getitem__)
    return RoleFinding("position the elevation head reads", best, scores, _confidence(scores, best))


def _tally_head(model: BracketTransformer, data: BracketDataset, read_position: int) -> RoleFinding:
    """Layer-0 head whose '(' and ')' writes oppose and whose attention is spread evenly."""
    scores: dict[str, float] = {}
    evidence: dict[str, float] = {}
    for head in range(model.cfg.n_heads):
        cos = tally_vectors(model, data.tokens, head).cosine
        spread = _suffix_uniformity(model, data, head, read_position)
        scores[f"0.{head}"] = max(-cos, 0.0) * spread
        evidence |= {f"0.{head} cos(vL,vR)": cos, f"0.{head} uniformity": spread}
    best = max(scores, key=scores.__getitem__)
    return RoleFinding(
        "tallies the parens after the read position",
        best if scores[best] > 0.5 else None,
        evidence | {f"{k} score": v for k, v in scores.items()},
        _confidence(scores, best),
        candidate=best,
    )


def _suffix_uniformity(
    model: BracketTransformer, data: BracketDataset, head: int, position: int
) -> float:
    """1 - total variation distance from uniform attention over the parens from ``position`` on."""
    row = attention_patterns(model, data.tokens, 0, head)[:, position]  # [batch, key]
    is_paren = data.tokens >= 3
    is_paren[:, :position] = False
    uniform = is_paren.float() / is_paren.sum(-1, keepdim=True).clamp(min=1)
    return float(1 - 0.5 * (row - uniform).abs().sum(-1).mean())


def _neurons(
    model: BracketTransformer, data: BracketDataset, roles: Roles, pre: Tensor
) -> tuple[list[str], dict[str, float]]:
    direction = head_input_direction(
        model, data.tokens, roles.elevation_layer, roles.elevation_head, roles.read_position, pre
    )
    opens = data[data.starts_open]
    ranks = []
    for layer in range(roles.elevation_layer):
        contrib = out_by_neuron_in_direction(
            model, opens.tokens, layer, direction, roles.read_position
        )
        ranks += rank_neurons(contrib, opens.labels, layer)
    if not ranks:  # an elevation head in layer 0 has no MLP before it
        return [], {}
    ranks.sort(key=lambda r: -abs(r.separation))
    top = abs(ranks[0].separation)
    chosen = [r for r in ranks if abs(r.separation) >= NEURON_SHARE * top][:MAX_NEURONS]
    return [r.name for r in chosen], {r.name: r.separation for r in ranks[: MAX_NEURONS * 2]}


def _start_close(model: BracketTransformer, data: BracketDataset) -> RoleFinding:
    """The component whose mean ablation raises P(balanced) most on strings starting with ')'.

    Only a component that matters *specifically* for those strings counts: its rise
    there must be at least SPECIFICITY times its rise on unbalanced strings starting
    with '('. Without that test any component the whole circuit needs (a tally head
    whose ablation hides every failure) would be named. Candidates are tried in order
    of their rise until one passes.
    """
    closes = data[~data.starts_open & (data.seq_length > 0)]
    opens = data[data.starts_open & ~data.labels]
    if len(closes) == 0:
        return RoleFinding("flags strings starting with ')'", None, {}, 0.0)
    rises = _rises(model, closes, component_names(model), data)
    evidence = dict(rises)
    for c in sorted(rises, key=lambda c: -rises[c]):
        if rises[c] <= 0.01:
            break
        elsewhere = _rises(model, opens, [c], data)[c] if len(opens) else 0.0
        evidence[f"{c} on unbalanced strings starting with '('"] = elsewhere
        if rises[c] >= SPECIFICITY * max(elsewhere, 0.0):
            return RoleFinding(
                "flags strings starting with ')'", c, evidence, _confidence(rises, c)
            )
    best = max(rises, key=rises.__getitem__)
    return RoleFinding(
        "flags strings starting with ')'", None, evidence, _confidence(rises, best), candidate=best
    )


def _rises(
    model: BracketTransformer, subset: BracketDataset, components: list[str], data: BracketDataset
) -> dict[str, float]:
    """Mean rise of P(balanced) on ``subset`` when each component is mean-ablated over ``data``."""
    base = predict_proba(model, subset.tokens)
    return {
        c: float((ablate(model, subset, c, "mean", reference=data).p_balanced - base).mean())
        for c in components
    }


def localise(
    model: BracketTransformer, data: BracketDataset, direction: Tensor | None = None
) -> Localisation:
    """Name every role of the circuit in ``model`` from measurements on ``data``.

    Args:
        direction: the unbalanced direction before the final LayerNorm, if already
            fitted on ``data`` (fitted here otherwise).
    """
    if not data.labels.any() or data.labels.all():
        raise BracketLensError("localisation needs balanced and unbalanced strings")
    if direction is None:
        direction = unbalanced_direction_pre_ln(model, data.tokens)
    stack = unbalanced_attribution(model, data.tokens, data.labels, direction)
    elevation, negative = _pick_heads(group_medians(stack, data))
    read = _read_position(model, data, elevation)
    tally = _tally_head(model, data, int(str(read.location)))
    layer, head = elevation.layer_head()
    roles = Roles(
        elevation_layer=layer,
        elevation_head=head,
        read_position=int(str(read.location)),
        tally_head=int(str(tally.location or "0.0").split(".")[1]),
    )
    neurons, neuron_evidence = _neurons(model, data, roles, direction)
    return Localisation(
        elevation_head=elevation,
        negative_head=negative,
        read_position=read,
        tally_head=tally,
        mlp_neurons=neurons,
        neuron_evidence=neuron_evidence,
        start_close_component=_start_close(model, data),
    )


__all__ = ["Localisation", "RoleFinding", "group_medians", "localise"]
