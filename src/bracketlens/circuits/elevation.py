"""The total elevation circuit, every step, for any (layer, head, position).

The course's hypothesis for its checkpoint: a layer-0 head tallies the string
(v_L and v_R point opposite ways), MLPs 0 and 1 at position 1 turn the tally into
"is it zero", and head 2.0 moves that from position 1 to position 0. Each step
here computes the number that supports (or refutes) its claim, for whichever
heads a model uses: the roles are arguments, never constants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.components import ComponentStack
from bracketlens.attribution.directions import unbalanced_direction_post_ln
from bracketlens.attribution.neurons import (
    NeuronClass,
    NeuronRank,
    classify_neurons,
    rank_neurons,
)
from bracketlens.circuits.heads import check_head, ov_matrix
from bracketlens.circuits.tally import (
    TallyVectors,
    mean_squared_cosine_random,
    mlp_input_cosines,
    tally_vectors,
)
from bracketlens.components import Component
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes import Gathered, gather
from bracketlens.stats import Estimate, bootstrap


@dataclass(frozen=True)
class Roles:
    """Where the elevation circuit sits in a model (the course model: 2.0, position 1, 0.0)."""

    elevation_layer: int = 2
    elevation_head: int = 0
    read_position: int = 1
    tally_head: int = 0  # in layer 0

    @property
    def elevation(self) -> Component:
        """The head that carries the total-elevation test."""
        return Component.at(self.elevation_layer, self.elevation_head)

    @property
    def tally(self) -> Component:
        """The layer-0 head that tallies the parens."""
        return Component.at(0, self.tally_head)


@dataclass(frozen=True)
class Claim:
    """One sentence of the hypothesis and the measured number behind it."""

    text: str
    evidence: dict[str, float]
    holds: bool


@dataclass(frozen=True)
class ElevationCircuit:
    """Every intermediate result of the elevation analysis, with the hypothesis."""

    roles: Roles
    attention_rows: Float[Tensor, "batch seqK"]  # from query 0, strings starting with "("
    pre_head_direction: Float[Tensor, " d_model"]
    ln_fit_r2: float
    components: ComponentStack  # before the elevation layer, at the read position, centred
    neuron_contributions: dict[int, Tensor]  # layer -> [batch(starts "("), neuron]
    neuron_ranks: dict[int, list[NeuronRank]]
    neuron_classes: dict[int, list[NeuronClass]]
    tally: TallyVectors
    mlp_cos2: dict[int, float]  # mean squared cos of v_R with the inputs of each MLP before it
    random_cos2: float
    claims: list[Claim] = field(default_factory=list)

    @property
    def attention_from_0(self) -> Float[Tensor, " seqK"]:
        """Mean attention from query 0 of the elevation head over strings starting with '('."""
        return self.attention_rows.mean(0)

    def attention_on_read(self) -> Estimate:
        """Attention from query 0 on the read position, mean over strings with its interval."""
        return bootstrap(self.attention_rows[:, self.roles.read_position].numpy())

    def to_json(self, groups: Int[Tensor, " batch"]) -> dict[str, object]:
        """Every number of the analysis (``groups``: each string's failure group)."""
        comp = self.components
        elevation_only = groups == FailureGroup.ELEVATION_ONLY
        return {
            "roles": asdict(self.roles),
            "attention_from_query_0": [round(x, 4) for x in self.attention_from_0.tolist()],
            "attention_on_read_position": self.attention_on_read().to_dict(),
            "ln1_fit_r2": _r(self.ln_fit_r2),
            "components_median_abs_on_elevation_failures": {
                label: _r(comp.values[i, elevation_only].abs().median())
                for i, label in enumerate(comp.labels)
            },
            "tally": {"head": f"0.{self.tally.head}", "cos_vL_vR": _r(self.tally.cosine)},
            "mlp_input_mean_cos2": {f"mlp {k}": _r(v) for k, v in self.mlp_cos2.items()},
            "random_mean_cos2": _r(self.random_cos2),
            "top_neurons": {
                str(layer): [
                    {
                        "neuron": r.name,
                        "separation": _r(r.separation),
                        "effect_size": _r(r.effect_size),
                    }
                    for r in ranks[:10]
                ]
                for layer, ranks in self.neuron_ranks.items()
            },
            "neuron_classes": {
                c.name: {
                    "kind": c.kind,
                    "rise_above": _r(c.rise_above),
                    "rise_below": _r(c.rise_below),
                    "r2": _r(c.r2),
                }
                for classes in self.neuron_classes.values()
                for c in classes
                if c.kind != "inactive"
            },
        }

    def claims_json(self) -> list[dict[str, object]]:
        """Each claim of the hypothesis, whether it holds, and its evidence."""
        return [
            {
                "claim": c.text,
                "holds": c.holds,
                "evidence": {k: _r(v) for k, v in c.evidence.items()},
            }
            for c in self.claims
        ]


def _r(x: float | Tensor) -> float:
    return round(float(x), 6)


def analyse_elevation(
    model: BracketTransformer, data: BracketDataset, roles: Roles | None = None
) -> ElevationCircuit:
    """Run every step of the elevation analysis on ``data`` for the given roles.

    One forward pass over ``data`` gathers everything (see :mod:`bracketlens.passes`).
    """
    roles = roles or Roles()
    _check_roles(model, data, roles)
    return elevation_from_pass(model, data, roles, gather_for(model, data, roles))


def gather_for(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles,
    groups: Int[Tensor, " batch"] | None = None,
) -> Gathered:
    """The engine's pass over ``data`` for these roles (:func:`bracketlens.passes.gather`)."""
    return gather(
        model,
        data,
        layer=roles.elevation_layer,
        head=roles.elevation_head,
        position=roles.read_position,
        groups=groups,
    )


def elevation_from_pass(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles,
    gathered: Gathered,
    fit_groups: list[int] | None = None,
) -> ElevationCircuit:
    """The elevation analysis from a pass already gathered for these roles.

    Args:
        fit_groups: which of the pass's groups the LayerNorm fits use (all by default).
    """
    _check_roles(model, data, roles)
    layer, head, pos = roles.elevation_layer, roles.elevation_head, roles.read_position
    if (gathered.layer, gathered.head, gathered.position) != (layer, head, pos):
        raise BracketLensError(
            f"the pass was gathered for head {gathered.layer}.{gathered.head} reading "
            f"position {gathered.position}, not {layer}.{head} reading {pos}"
        )
    opens = data.starts_open
    final_fit = gathered.final_fit(fit_groups)
    unbalanced = final_fit.pull_back(unbalanced_direction_post_ln(model))
    ln1_fit = gathered.read_fit(fit_groups)
    direction = ln1_fit.pull_back(ov_matrix(model, layer, head) @ unbalanced)
    components = gathered.components_at_read(model, data.tokens, direction).centred(data.labels)
    contributions = {
        mlp: gathered.neuron_contributions(model, mlp, direction)[opens] for mlp in range(layer)
    }
    labels, proportion = data.labels[opens], data.open_proportion[opens]
    tally = tally_vectors(model, data.tokens, roles.tally_head, fit=gathered.pooled_ln0_fit())
    result = ElevationCircuit(
        roles=roles,
        attention_rows=gathered.attention_from_0[opens],
        pre_head_direction=direction,
        ln_fit_r2=ln1_fit.r2,
        components=components,
        neuron_contributions=contributions,
        neuron_ranks={k: rank_neurons(v, labels, k) for k, v in contributions.items()},
        neuron_classes={k: classify_neurons(v, proportion, k) for k, v in contributions.items()},
        tally=tally,
        mlp_cos2={
            k: mlp_input_cosines(model, tally.v_right, k).pow(2).mean().item() for k in range(layer)
        },
        random_cos2=mean_squared_cosine_random(tally.v_right),
    )
    return _with_claims(result, data)


def _check_roles(model: BracketTransformer, data: BracketDataset, roles: Roles) -> None:
    check_head(model, roles.elevation_layer, roles.elevation_head)
    check_head(model, 0, roles.tally_head)
    if not 0 < roles.read_position < data.tokens.shape[1]:
        raise BracketLensError(f"read position {roles.read_position} is outside the strings")
    if not data.starts_open.any() or not data.labels.any():
        raise BracketLensError("the elevation analysis needs balanced strings starting with '('")


def _with_claims(result: ElevationCircuit, data: BracketDataset) -> ElevationCircuit:
    roles = result.roles
    head = roles.elevation.short
    row = result.attention_from_0
    others = torch.cat([row[: roles.read_position], row[roles.read_position + 1 :]])
    elevation = data.failure_groups == FailureGroup.ELEVATION_ONLY
    medians = result.components.values[:, elevation].abs().median(dim=1).values
    top2 = [result.components.labels[i] for i in medians.topk(min(2, len(medians))).indices]
    mlps = [lbl for lbl in result.components.labels if lbl.startswith("mlp")]
    claims = [
        Claim(
            f"head {head} moves position {roles.read_position} to position 0: from query 0 "
            f"it attends to key {roles.read_position} more than to any other key",
            {"attention": float(row[roles.read_position]), "max_other": float(others.max())},
            bool(row[roles.read_position] > others.max()),
        ),
        Claim(
            f"the MLPs turn the tally into 'is it zero': {', '.join(mlps)} are the components "
            f"with the largest median |contribution| to head {head}'s direction at position "
            f"{roles.read_position} on total-elevation failures",
            {lbl: float(m) for lbl, m in zip(result.components.labels, medians, strict=True)},
            set(top2) == set(mlps[:2]),
        ),
        Claim(
            f"{roles.tally.label} tallies the string: what it writes for '(' and for ')' "
            "point in opposite directions (cosine close to -1)",
            {"cos_vL_vR": result.tally.cosine},
            result.tally.cosine < -0.9,
        ),
    ]
    return replace(result, claims=claims)
