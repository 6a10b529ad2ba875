"""The whole analysis of SPEC.md section 3 as one function: model + data -> Findings.

``bracketlens analyze`` prints :meth:`Findings.to_json`; ``bracketlens report``
renders the same object. Roles (which head tests elevation, which position it
reads...) come from :func:`bracketlens.verify.localise`, fitted on one half of
the sample; every number the report shows is in the JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bracketlens.algorithms import Explanation, Search, explain
from bracketlens.attribution.components import ComponentStack
from bracketlens.attribution.directions import unbalanced_direction_post_ln
from bracketlens.circuits.elevation import ElevationCircuit, Roles, elevation_from_pass, gather_for
from bracketlens.circuits.negative import (
    NegativeAttention,
    NegativeFeeders,
    negative_feeders,
    negative_head_attention,
)
from bracketlens.circuits.patching import PatchedAttention, patched_attention
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import MAX_PARENS, tokenize
from bracketlens.data.truth import is_balanced
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import Evaluation, predict_proba
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, bootstrap
from bracketlens.verify.attribution_patching import AttributionPatching, attribution_patching
from bracketlens.verify.localise import Localisation, localise
from bracketlens.verify.paths import PathPatch, path_patch_elevation
from bracketlens.verify.scrub import ScrubResult, scrub_both, scrub_elevation, scrub_negative

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Findings:
    """Everything the report shows: numbers for the JSON, tensors for the figures."""

    meta: dict[str, object]
    data: BracketDataset
    evaluation: Evaluation
    accuracy: Estimate
    group_accuracy: dict[str, Estimate]
    ln_final_r2: dict[str, float]
    attribution: ComponentStack
    localisation: Localisation
    roles: Roles
    roles_source: str
    elevation: ElevationCircuit
    attention_read: Estimate
    patching: list[PatchedAttention]
    scrubs: list[ScrubResult]
    negative_attention: NegativeAttention | None
    negative_feeders: NegativeFeeders | None
    path_patch: PathPatch | None
    attribution_patching: AttributionPatching
    attack: list[dict[str, object]]  # strings from `bracketlens attack --json`, rescored here
    explanation: Explanation | None = None  # which causal model the network runs (issue 14)

    def to_json(self) -> dict[str, object]:
        """Every number of the report, JSON-ready."""
        from bracketlens.report.findings_json import findings_to_json

        return findings_to_json(self)


def model_checksum(model: BracketTransformer) -> str:
    """SHA-256 of the weights (names, shapes and float32 bytes, in state-dict order)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def analyze(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    weights: str = "bundled default",
    roles: Roles | None = None,
    progress: Progress | None = None,
    attack_strings: list[str] | None = None,
) -> Findings:
    """Run the analysis of SPEC.md section 3 on ``data``.

    Args:
        roles: where the elevation circuit sits; found by localisation when None.
        progress: called with the name of each step as it starts.
        attack_strings: adversarial strings (e.g. from ``bracketlens attack``) to
            rescore with this model and check against the ground truth.
    """
    step = progress or (lambda _: None)
    _check_data(data)
    half_a, half_b = data.split(seed=0)  # fits and localisation on a, checks on b
    step("localising the circuit")
    found = localise(model, half_a)
    if roles is None:
        roles, source = _roles_from(found)
    else:
        source = "given"
    step("one pass over the data")
    gathered = gather_for(model, data, roles, groups=data.split_groups(seed=0))
    evaluation = gathered.evaluation(data)
    fit = gathered.final_fit([0])
    direction = fit.pull_back(unbalanced_direction_post_ln(model))
    attribution = gathered.components_at_0(model, data.tokens, direction).centred(data.labels)
    elevation = elevation_from_pass(model, data, roles, gathered)
    step("resampling tests")
    scrubs = _scrubs(model, half_b, roles, found)
    step("path patching")
    paths = path_patch_elevation(model, half_b, roles) if roles.elevation_layer > 0 else None
    step("attribution patching")
    patching = attribution_patching(model, half_b)
    step("the negative head")
    negative_attention, feeders = _negative_head(model, data, found, direction)
    step("what the model computes")
    explanation = explain(model, data, seed=0, search=Search.quick())  # `explain` looks harder
    step("patching views")
    return Findings(
        meta=_meta(model, data, weights),
        data=data,
        evaluation=evaluation,
        accuracy=bootstrap(evaluation.correct.numpy()),
        group_accuracy=_group_accuracy(evaluation),
        ln_final_r2={"fit_half": fit.r2, "held_out_half": gathered.final_ln[1].score(fit)},
        attribution=attribution,
        localisation=found,
        roles=roles,
        roles_source=source,
        elevation=elevation,
        attention_read=bootstrap(elevation.attention_rows[:, roles.read_position].numpy()),
        patching=_patching_views(model, roles),
        scrubs=scrubs,
        negative_attention=negative_attention,
        negative_feeders=feeders,
        path_patch=paths,
        attribution_patching=patching,
        attack=_rescore(model, attack_strings or []),
        explanation=explanation,
    )


def _check_data(data: BracketDataset) -> None:
    opens = data.starts_open
    if len(data) < 20 or not data.labels.any() or data.labels.all() or not opens.any():
        raise BracketLensError(
            "the analysis needs at least 20 strings, balanced and unbalanced ones, and some "
            "starting with '('; use a larger sample (e.g. --n 5000)"
        )


def _roles_from(found: Localisation) -> tuple[Roles, str]:
    try:
        roles = found.roles()
    except BracketLensError:
        return Roles(), "course default (localisation found no elevation circuit)"
    if not found.tally_head.found:
        return roles, (
            f"localised; no layer-0 head passes the tally test, so the best candidate "
            f"0.{roles.tally_head} stands in"
        )
    return roles, "localised"


def _meta(model: BracketTransformer, data: BracketDataset, weights: str) -> dict[str, object]:
    from bracketlens import __version__

    return {
        "library_version": __version__,
        "weights": weights,
        "model_sha256": model_checksum(model),
        "data": data.description,
        "n": len(data),
    }


def _group_accuracy(evaluation: Evaluation) -> dict[str, Estimate]:
    from bracketlens.data.truth import FailureGroup

    correct = evaluation.correct.numpy()
    return {g.label: bootstrap(correct[(evaluation.groups == g).numpy()]) for g in FailureGroup}


def _scrubs(
    model: BracketTransformer, held_out: BracketDataset, roles: Roles, found: Localisation
) -> list[ScrubResult]:
    """Resampling tests of the hypotheses, on the half that localisation did not see."""
    out = [scrub_elevation(model, held_out, roles)]
    if found.negative_head.found:
        neg = found.negative_head.layer_head()
        out.append(scrub_negative(model, held_out, *neg))
        out.append(scrub_both(model, held_out, roles, neg))
    return out


def _rescore(model: BracketTransformer, strings: list[str]) -> list[dict[str, object]]:
    """P(balanced) under this model and the true label; wrongest first."""
    if not strings:
        return []
    p = predict_proba(model, tokenize(strings)).tolist()
    rows = [
        {"string": s, "label": is_balanced(s), "p_balanced": pb}
        for s, pb in zip(strings, p, strict=True)
    ]
    return sorted(rows, key=lambda r: -abs(float(r["label"]) - float(r["p_balanced"])))


def _negative_head(
    model: BracketTransformer, data: BracketDataset, found: Localisation, direction: torch.Tensor
) -> tuple[NegativeAttention | None, NegativeFeeders | None]:
    """Where the negative head looks and what feeds it (None, None without one)."""
    if not found.negative_head.found or not data.failure_types.negative.any():
        return None, None
    layer, head = found.negative_head.layer_head()
    return (
        negative_head_attention(model, data, layer, head),
        negative_feeders(model, data, layer, head, output_direction=direction),
    )


def _patching_views(model: BracketTransformer, roles: Roles) -> list[PatchedAttention]:
    """The course's views of the tallying head: its attention on all-'(' strings."""
    left, right = "(" * MAX_PARENS, ")" * MAX_PARENS
    head = roles.tally_head
    return [
        patched_attention(model, 0, head, run_on=left),
        patched_attention(model, 0, head, run_on=left, keys_from=[left, right]),
        patched_attention(model, 0, head, run_on=right, queries_from=[left]),
    ]
