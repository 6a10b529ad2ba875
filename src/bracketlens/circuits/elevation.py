"""The total elevation circuit, every step, for any (layer, head, position).

The course's hypothesis for its checkpoint: a layer-0 head tallies the string
(v_L and v_R point opposite ways), MLPs 0 and 1 at position 1 turn the tally into
"is it zero", and head 2.0 moves that from position 1 to position 0. Each step
here computes the number that supports (or refutes) its claim, for whichever
heads a model uses: the roles are arguments, never constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.attribution.components import (
    ComponentStack,
    centre_on_balanced,
    components_in_direction,
)
from bracketlens.attribution.directions import unbalanced_direction_pre_ln
from bracketlens.attribution.layernorm import fit_layernorm
from bracketlens.attribution.neurons import (
    NeuronClass,
    NeuronRank,
    classify_neurons,
    out_by_neuron_in_direction,
    rank_neurons,
)
from bracketlens.circuits.heads import (
    attention_patterns,
    check_head,
    head_input_direction,
)
from bracketlens.circuits.tally import (
    TallyVectors,
    mean_squared_cosine_random,
    mlp_input_cosines,
    tally_vectors,
)
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer


@dataclass(frozen=True)
class Roles:
    """Where the elevation circuit sits in a model (the course model: 2.0, position 1, 0.0)."""

    elevation_layer: int = 2
    elevation_head: int = 0
    read_position: int = 1
    tally_head: int = 0  # in layer 0


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


def analyse_elevation(
    model: BracketTransformer, data: BracketDataset, roles: Roles | None = None
) -> ElevationCircuit:
    """Run every step of the elevation analysis on ``data`` for the given roles."""
    roles = roles or Roles()
    check_head(model, roles.elevation_layer, roles.elevation_head)
    check_head(model, 0, roles.tally_head)
    if not 0 < roles.read_position < data.tokens.shape[1]:
        raise BracketLensError(f"read position {roles.read_position} is outside the strings")
    starts_open = data[data.starts_open]
    if len(starts_open) == 0 or not data.labels.any():
        raise BracketLensError("the elevation analysis needs balanced strings starting with '('")
    layer, head, pos = roles.elevation_layer, roles.elevation_head, roles.read_position
    pattern = attention_patterns(model, starts_open.tokens, layer, head)
    final_fit = fit_layernorm(model, data.tokens, "ln_final", position=0)
    unbalanced = unbalanced_direction_pre_ln(model, data.tokens, final_fit)
    ln1_fit = fit_layernorm(model, data.tokens, f"blocks.{layer}.ln1", position=pos)
    direction = head_input_direction(model, data.tokens, layer, head, pos, unbalanced, ln1_fit)
    components = _components_before(model, data, direction, layer, pos)
    contributions = {
        mlp: out_by_neuron_in_direction(model, starts_open.tokens, mlp, direction, pos)
        for mlp in range(layer)
    }
    tally = tally_vectors(model, data.tokens, roles.tally_head)
    result = ElevationCircuit(
        roles=roles,
        attention_rows=pattern[:, 0],
        pre_head_direction=direction,
        ln_fit_r2=ln1_fit.r2,
        components=components,
        neuron_contributions=contributions,
        neuron_ranks={k: rank_neurons(v, starts_open.labels, k) for k, v in contributions.items()},
        neuron_classes={
            k: classify_neurons(v, starts_open.open_proportion, k) for k, v in contributions.items()
        },
        tally=tally,
        mlp_cos2={
            k: mlp_input_cosines(model, tally.v_right, k).pow(2).mean().item() for k in range(layer)
        },
        random_cos2=mean_squared_cosine_random(tally.v_right),
    )
    return _with_claims(result, data)


def _components_before(
    model: BracketTransformer,
    data: BracketDataset,
    direction: Tensor,
    layer: int,
    position: int,
) -> ComponentStack:
    """Components written before ``layer``, at ``position``, centred on balanced strings."""
    stack = components_in_direction(model, data.tokens, direction, position)
    keep = 1 + layer * (model.cfg.n_heads + 1)  # embeddings, then (heads, MLP) per layer
    values = centre_on_balanced(stack.values[:keep], data.labels)
    return ComponentStack(values, stack.labels[:keep], torch.zeros_like(stack.bias))


def _with_claims(result: ElevationCircuit, data: BracketDataset) -> ElevationCircuit:
    roles = result.roles
    head = f"{roles.elevation_layer}.{roles.elevation_head}"
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
            f"head 0.{roles.tally_head} tallies the string: what it writes for '(' and for ')' "
            "point in opposite directions (cosine close to -1)",
            {"cos_vL_vR": result.tally.cosine},
            result.tally.cosine < -0.9,
        ),
    ]
    return replace(result, claims=claims)
