"""Findings -> a JSON-ready dict: every number the report shows, nothing it does not."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from torch import Tensor

from bracketlens.data.truth import FailureGroup
from bracketlens.verify.localise import Localisation, RoleFinding

if TYPE_CHECKING:
    from bracketlens.report.analyze import Findings


def _r(x: float | Tensor, digits: int = 6) -> float:
    return round(float(x), digits)


def _role(f: RoleFinding) -> dict[str, object]:
    return {
        "location": f.location,
        "confidence": _r(f.confidence, 4),
        "evidence": {k: _r(v) for k, v in f.evidence.items()},
    }


def localisation_json(found: Localisation) -> dict[str, object]:
    """The localisation block shared by ``analyze`` and ``circuit``."""
    return {
        "elevation_head": _role(found.elevation_head),
        "negative_head": _role(found.negative_head),
        "read_position": _role(found.read_position),
        "tally_head": _role(found.tally_head),
        "start_close_component": _role(found.start_close_component),
        "mlp_neurons": found.mlp_neurons,
        "neuron_separation": {k: _r(v) for k, v in found.neuron_evidence.items()},
    }


def _attribution(f: Findings) -> dict[str, object]:
    values, groups = f.attribution.values, f.data.failure_groups
    out: dict[str, object] = {}
    for i, label in enumerate(f.attribution.labels):
        per_group = {
            g.label: _r(values[i, groups == g].median())
            for g in FailureGroup
            if (groups == g).any()
        }
        out[label] = {
            "balanced_sd": _r(values[i, f.data.labels].std()),
            "median_by_group": per_group,
        }
    return out


def _elevation(f: Findings) -> dict[str, object]:
    e = f.elevation
    comp = e.components
    elevation_only = f.data.failure_groups == FailureGroup.ELEVATION_ONLY
    return {
        "roles": asdict(e.roles),
        "attention_from_query_0": [_r(x, 4) for x in e.attention_from_0.tolist()],
        "attention_on_read_position": f.attention_read.to_dict(),
        "ln1_fit_r2": _r(e.ln_fit_r2),
        "components_median_abs_on_elevation_failures": {
            label: _r(comp.values[i, elevation_only].abs().median())
            for i, label in enumerate(comp.labels)
        },
        "tally": {"head": f"0.{e.tally.head}", "cos_vL_vR": _r(e.tally.cosine)},
        "mlp_input_mean_cos2": {f"mlp {k}": _r(v) for k, v in e.mlp_cos2.items()},
        "random_mean_cos2": _r(e.random_cos2),
        "top_neurons": {
            str(layer): [
                {"neuron": r.name, "separation": _r(r.separation), "effect_size": _r(r.effect_size)}
                for r in ranks[:10]
            ]
            for layer, ranks in e.neuron_ranks.items()
        },
        "neuron_classes": {
            c.name: {
                "kind": c.kind,
                "rise_above": _r(c.rise_above),
                "rise_below": _r(c.rise_below),
                "r2": _r(c.r2),
            }
            for classes in e.neuron_classes.values()
            for c in classes
            if c.kind != "inactive"
        },
    }


def _feeders(f: Findings) -> dict[str, object] | None:
    feeders = f.negative_feeders
    if feeders is None:
        return None
    groups = f.data.failure_groups
    negative_only = (groups == FailureGroup.NEGATIVE_ONLY).numpy()
    wrong = feeders.from_wrong_way[:, negative_only]
    return {
        "head": feeders.head,
        "ln1_fit_r2_paren_positions": _r(feeders.ln_fit_r2),
        "median_by_group": {
            label: {g: _r(v) for g, v in by_group.items()}
            for label, by_group in feeders.group_medians(groups).items()
        },
        "median_from_wrong_way_positions_just_negative": {
            label: _r(float(wrong[i].median())) if wrong.shape[1] else None
            for i, label in enumerate(feeders.components.labels)
        },
    }


def findings_to_json(f: Findings) -> dict[str, object]:
    from bracketlens.verify.circuit import attribution_patching_json, path_patch_json

    """Every number of the report."""
    return {
        "meta": f.meta,
        "model_and_data": {
            "accuracy": f.accuracy.to_dict(),
            "n_wrong": f.evaluation.n_wrong,
            "by_group": {k: v.to_dict() for k, v in f.group_accuracy.items()},
            "wrong_strings": [
                {"string": s, "p_balanced": _r(p)} for s, p in f.evaluation.wrong[:50]
            ],
        },
        "logit_attribution": {
            "ln_final_fit_r2": {k: _r(v) for k, v in f.ln_final_r2.items()},
            "components": _attribution(f),
        },
        "explanation": None if f.explanation is None else f.explanation.to_json(),
        "localisation": localisation_json(f.localisation),
        "roles_source": f.roles_source,
        "negative_head_attention": None
        if f.negative_attention is None
        else {
            "head": f.negative_attention.head,
            "on_wrong_way_positions": f.negative_attention.on_wrong_way.to_dict(),
            "uniform_baseline": f.negative_attention.uniform_baseline.to_dict(),
            "lift": _r(f.negative_attention.lift),
        },
        "negative_head_feeders": _feeders(f),
        "elevation_circuit": _elevation(f),
        "patching": [
            {
                "description": p.description,
                "mean_attention_from_read_position": [
                    _r(x, 4) for x in p.pattern[f.roles.tally_head, f.roles.read_position].tolist()
                ],
            }
            for p in f.patching
        ],
        "resampling_tests": [
            {
                "hypothesis": s.hypothesis,
                "activation": s.activation,
                "loss_recovered": {k: _r(v) for k, v in s.recovered().items()},
                "loss_recovered_ci95": {k: s.recovered_interval(k).to_dict() for k in s.recovered()}
                if s.per_string is not None
                else None,
                "control_loss_recovered": {k: _r(v) for k, v in s.recovered("control").items()},
                "loss_model": {k: _r(v, 8) for k, v in s.loss_model.items()},
                "loss_random": {k: _r(v, 8) for k, v in s.loss_random.items()},
            }
            for s in f.scrubs
        ],
        "path_patching": path_patch_json(f.path_patch),
        "attribution_patching": attribution_patching_json(f.attribution_patching),
        "adversarial_examples": f.attack,
        "hypothesis": [
            {
                "claim": c.text,
                "holds": c.holds,
                "evidence": {k: _r(v) for k, v in c.evidence.items()},
            }
            for c in f.elevation.claims
        ],
    }
