"""The one result of the analysis pipeline (:mod:`bracketlens.pipeline`) and its JSON.

Every command prints or renders an :class:`Analysis`: ``analyze`` and ``report``
fill every field, ``circuit`` leaves the circuit analyses empty, ``seeds`` keeps
the localisation. A stage that did not run leaves its field ``None`` (or empty),
and its JSON key ``null``. An optional stage adds one field with a default here
and one line in the pipeline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bracketlens.algorithms import Explanation
from bracketlens.attribution.components import ComponentStack
from bracketlens.circuits.elevation import ElevationCircuit, Roles
from bracketlens.circuits.negative import NegativeAttention, NegativeFeeders
from bracketlens.circuits.patching import PatchedAttention
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.discovery.stage import ReportDiscovery
from bracketlens.explorer.export import ExplorerExport
from bracketlens.interventions.ablate import AblationEffect
from bracketlens.interventions.attribution_patching import AttributionPatching
from bracketlens.interventions.paths import PathPatch
from bracketlens.interventions.scrub import ScrubResult
from bracketlens.localisation import Localisation
from bracketlens.model.predict import Evaluation
from bracketlens.model.transformer import BracketTransformer
from bracketlens.stats import Estimate, wilson

SCHEMA_VERSION = 2  # 1 is the unversioned JSON (no schema_version key)


@dataclass(frozen=True)
class Split:
    """How the strings were used: localisation fits on one half, interventions on the other.

    Attributes:
        seed: the split's seed (the command's ``--seed``).
        n: strings given; every observational number uses all of them.
        n_fit, n_held_out: the two halves.
        n_causal: held-out strings the interventions ran on (min(``--causal-n``, held out)).
    """

    seed: int
    n: int
    n_fit: int
    n_held_out: int
    n_causal: int

    def to_json(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "n": self.n,
            "n_fit": self.n_fit,
            "n_held_out": self.n_held_out,
            "n_causal": self.n_causal,
        }


@dataclass(frozen=True)
class Analysis:
    """Everything a command shows: numbers for the JSON, tensors for the figures."""

    meta: dict[str, object]
    data: BracketDataset
    split: Split
    evaluation: Evaluation
    accuracy: Estimate
    group_accuracy: dict[str, Estimate]
    ln_final_r2: dict[str, float]
    attribution: ComponentStack  # every component at position 0, centred on balanced strings
    localisation: Localisation
    roles: Roles | None  # None where the elevation circuit was not found
    roles_source: str
    ablations: list[AblationEffect] = field(default_factory=list)
    elevation: ElevationCircuit | None = None
    negative_attention: NegativeAttention | None = None
    negative_feeders: NegativeFeeders | None = None
    patching: list[PatchedAttention] = field(default_factory=list)
    scrubs: list[ScrubResult] = field(default_factory=list)
    path_patch: PathPatch | None = None
    attribution_patching: AttributionPatching | None = None
    attack: list[dict[str, object]] = field(default_factory=list)  # rescored attack strings
    explorer: ExplorerExport | None = None  # the in-page model (weights and means), not JSON
    explanation: Explanation | None = None  # which causal model the network runs (explain)
    discovery: ReportDiscovery | None = None  # the circuit found without a template

    @property
    def attention_read(self) -> Estimate | None:
        """The elevation head's attention from query 0 on the read position."""
        return None if self.elevation is None else self.elevation.attention_on_read()

    def to_json(self) -> dict[str, object]:
        """Every number, JSON-ready: one schema for every command (stages not run: null)."""
        groups = self.data.failure_groups
        return {
            "schema_version": SCHEMA_VERSION,
            "meta": self.meta,
            "split": self.split.to_json(),
            "model_and_data": self._model_json(),
            "logit_attribution": {
                "ln_final_fit_r2": {k: round(v, 6) for k, v in self.ln_final_r2.items()},
                "components": self._attribution_json(),
            },
            "explanation": None if self.explanation is None else self.explanation.to_json(),
            **self._discovery_json(),
            "localisation": self.localisation.to_json(),
            "roles_source": self.roles_source,
            "negative_head_attention": _json(self.negative_attention),
            "negative_head_feeders": None
            if self.negative_feeders is None
            else self.negative_feeders.to_json(groups),
            "elevation_circuit": None if self.elevation is None else self.elevation.to_json(groups),
            "patching": [p.to_json(self.roles) for p in self.patching] if self.roles else [],
            "mean_ablation": {a.component: a.to_json() for a in self.ablations},
            "resampling_tests": [s.to_json() for s in self.scrubs],
            "path_patching": _json(self.path_patch),
            "attribution_patching": _json(self.attribution_patching),
            "adversarial_examples": self.attack,
            "hypothesis": [] if self.elevation is None else self.elevation.claims_json(),
        }

    def _discovery_json(self) -> dict[str, object]:
        """The discovery stage's JSON (null where it did not run, with a reason where it ran
        and found too few pairs)."""
        d = self.discovery
        out: dict[str, object] = {"discovery": None if d is None else d.to_json()}
        if d is not None and d.reason is not None:
            out["discovery_null_reason"] = d.reason
        return out

    def _model_json(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy.to_dict(),
            "n_wrong": self.evaluation.n_wrong,
            "by_group": {k: v.to_dict() for k, v in self.group_accuracy.items()},
            "wrong_strings": [
                {"string": s, "p_balanced": round(p, 6)} for s, p in self.evaluation.wrong[:50]
            ],
        }

    def _attribution_json(self) -> dict[str, object]:
        values, groups = self.attribution.values, self.data.failure_groups
        out: dict[str, object] = {}
        for i, label in enumerate(self.attribution.labels):
            per_group = {
                g.label: round(float(values[i, groups == g].median()), 6)
                for g in FailureGroup
                if (groups == g).any()
            }
            out[label] = {
                "balanced_sd": round(float(values[i, self.data.labels].std()), 6),
                "median_by_group": per_group,
            }
        return out


def _json(result: object) -> object:
    to_json = getattr(result, "to_json", None)
    return None if to_json is None else to_json()


def accuracy(correct: Tensor) -> Estimate:
    """The fraction of strings classified correctly, with its Wilson interval.

    A fraction, not a mean of per-string numbers: the Wilson interval stays honest
    where a percentile bootstrap collapses (no mistake among 5,000 strings gives the
    bootstrap interval [1, 1]), and it costs nothing at 100,000 strings.
    """
    return wilson(int(correct.sum()), len(correct))


def group_accuracy(evaluation: Evaluation) -> dict[str, Estimate]:
    """Accuracy per failure group with its Wilson interval."""
    return {g.label: accuracy(evaluation.correct[evaluation.groups == g]) for g in FailureGroup}


def model_checksum(model: BracketTransformer) -> str:
    """SHA-256 of the weights (names, shapes and float32 bytes, in state-dict order)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def meta(model: BracketTransformer, data: BracketDataset, weights: str) -> dict[str, object]:
    """Library version, weights, their checksum, and the data."""
    from bracketlens import __version__

    return {
        "library_version": __version__,
        "weights": weights,
        "model_sha256": model_checksum(model),
        "data": data.description,
        "n": len(data),
    }


__all__ = ["SCHEMA_VERSION", "Analysis", "Split", "group_accuracy", "meta", "model_checksum"]
