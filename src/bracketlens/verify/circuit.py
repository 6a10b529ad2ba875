"""Localise on one half of a sample, verify causally on the other: ``bracketlens circuit``."""

from __future__ import annotations

from dataclasses import dataclass
from math import isnan

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup, labels_present
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate
from bracketlens.verify.ablate import AblationEffect, ablate, component_names
from bracketlens.verify.attribution_patching import AttributionPatching, attribution_patching
from bracketlens.verify.localise import Localisation, localise
from bracketlens.verify.paths import PathPatch, path_patch_elevation
from bracketlens.verify.scrub import ScrubResult, scrub_both, scrub_elevation, scrub_negative

ELEVATION = FailureGroup.ELEVATION_ONLY.label
NEGATIVE = FailureGroup.NEGATIVE_ONLY.label


@dataclass(frozen=True)
class CircuitVerdict:
    """Where the circuit is (fitted on one half) and how much it explains (on the other)."""

    localisation: Localisation
    elevation: ScrubResult | None
    negative: ScrubResult | None
    both: ScrubResult | None
    ablations: list[AblationEffect]
    n_fit: int
    n_verify: int
    path_patch: PathPatch | None = None
    attribution: AttributionPatching | None = None

    def loss_recovered_intervals(self) -> dict[str, Estimate | None]:
        """The headline shares with 95% bootstrap intervals over the verified strings."""
        return {
            "total_elevation": self.elevation.recovered_interval(ELEVATION)
            if self.elevation
            else None,
            "negative": self.negative.recovered_interval(NEGATIVE) if self.negative else None,
            "all": self.both.recovered_interval("all") if self.both else None,
        }

    def loss_recovered(self) -> dict[str, float | None]:
        """The headline shares of loss recovered (unclipped)."""
        return {
            "total_elevation": self.elevation.recovered()[ELEVATION] if self.elevation else None,
            "negative": self.negative.recovered()[NEGATIVE] if self.negative else None,
            "all": self.both.recovered()["all"] if self.both else None,
        }


def verify_circuit(
    model: BracketTransformer, data: BracketDataset, seed: int = 0
) -> CircuitVerdict:
    """Localise on one half of ``data``, then resample and ablate on the other half."""
    fit_half, test_half = data.split(seed)
    found = localise(model, fit_half)
    elevation = negative = both = None
    try:
        roles = found.roles()
    except BracketLensError:
        roles = None
    if roles is not None:
        elevation = scrub_elevation(model, test_half, roles, seed)
    if found.negative_head.found:
        neg = found.negative_head.layer_head()
        negative = scrub_negative(model, test_half, *neg, seed)
        if roles is not None:
            both = scrub_both(model, test_half, roles, neg, seed)
    ablations = [ablate(model, test_half, c, "mean") for c in component_names(model)]
    paths = None
    if roles is not None and roles.elevation_layer > 0:
        paths = path_patch_elevation(model, test_half, roles, seed)
    return CircuitVerdict(
        found,
        elevation,
        negative,
        both,
        ablations,
        len(fit_half),
        len(test_half),
        path_patch=paths,
        attribution=attribution_patching(model, test_half),
    )


def verdict_json(v: CircuitVerdict) -> dict[str, object]:
    """The JSON of ``bracketlens circuit``."""
    from bracketlens.report.findings_json import localisation_json

    loc = localisation_json(v.localisation)

    def scrub(r: ScrubResult | None) -> dict[str, object] | None:
        if r is None:
            return None
        return {
            "hypothesis": r.hypothesis,
            "activation": r.activation,
            "recovered": r.recovered(),
            "control_recovered": r.recovered("control"),
            "loss_model": r.loss_model,
            "loss_hypothesis": r.loss_hypothesis,
            "loss_random": r.loss_random,
        }

    return {
        "elevation_head": v.localisation.elevation_head.location,
        "negative_head": v.localisation.negative_head.location,
        "tally_head": v.localisation.tally_head.location,
        "read_position": _int_or_none(v.localisation.read_position.location),
        "start_close_component": v.localisation.start_close_component.location,
        "mlp_neurons": v.localisation.mlp_neurons,
        "loss_recovered": v.loss_recovered(),
        "loss_recovered_ci95": {
            k: None if e is None else e.to_dict() for k, e in v.loss_recovered_intervals().items()
        },
        "evidence": loc,
        "scrubbing": {
            "elevation": scrub(v.elevation),
            "negative": scrub(v.negative),
            "both": scrub(v.both),
        },
        "mean_ablation": {
            a.component: {"loss": a.loss, "accuracy": a.accuracy, "by_group": a.by_group}
            for a in v.ablations
        },
        "path_patching": path_patch_json(v.path_patch),
        "attribution_patching": attribution_patching_json(v.attribution),
        "n_localise": v.n_fit,
        "n_verify": v.n_verify,
    }


def path_patch_json(p: PathPatch | None) -> dict[str, object] | None:
    """Path patching results, JSON-ready (None where the route could not be patched)."""
    if p is None:
        return None
    return {
        "route": p.route,
        "route_share_of_sender_at_read_position": p.share(),
        "route_share_ci95": {
            g: p.share_interval(g).to_dict() for g, v in p.share().items() if not isnan(v)
        },
        "clean_loss": p.clean_loss,
        "logit_diff_change": {k: e.logit_diff_change for k, e in p.effects.items()},
        "loss": {k: e.loss for k, e in p.effects.items()},
    }


def attribution_patching_json(
    a: AttributionPatching | None, k: int = 5
) -> dict[str, list[dict[str, object]]] | None:
    """The ``k`` most important (component, position) pairs per failure group."""
    if a is None:
        return None
    out = {}
    for group in labels_present(a.groups):
        out[group] = [
            {"component": t.component, "position": t.position, "estimated_margin_drop": t.effect}
            for t in a.top(group, k)
        ]
    return out


def _int_or_none(x: str | None) -> int | None:
    return None if x is None else int(x)
