"""Result objects of the adversarial search: findings, stage summaries, the whole attack.

Findings are ranked by how wrong the model is, measured in log-odds so that
strings the model calls balanced at 0.99997 and 0.99998 still rank apart (their
float32 probabilities would be nearly indistinguishable):

- an unbalanced string is worse the higher its log-odds of balanced;
- a balanced string is worse the lower its log-odds of balanced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One scored candidate: the string, its true label and the model's log-odds.

    Attributes:
        string: the paren string.
        label: ground truth, ``True`` for balanced (checked, never assumed).
        logit_diff: the model's logit of balanced minus its logit of unbalanced.
        stage: the name of the search stage that scored it first.
    """

    string: str
    label: bool
    logit_diff: float
    stage: str

    @property
    def p_balanced(self) -> float:
        """The model's P(balanced), computed from the log-odds in float64."""
        return sigmoid(self.logit_diff)

    @property
    def wrongness(self) -> float:
        """Log-odds the model puts on the wrong class (positive: misclassified)."""
        return -self.logit_diff if self.label else self.logit_diff

    @property
    def correct(self) -> bool:
        """Whether the model's verdict (P(balanced) > 0.5) matches the truth."""
        return (self.logit_diff > 0) == self.label

    def to_dict(self) -> dict[str, object]:
        """``{"string", "label", "p_balanced"}``, the shape ``predict --json`` prints."""
        return {"string": self.string, "label": self.label, "p_balanced": self.p_balanced}


@dataclass(frozen=True)
class StageSummary:
    """What one stage of the search cost and found.

    Attributes:
        name: the stage's name.
        evaluations: strings it scored (each string counts once over the whole search).
        n_correct: how many of those the model classified correctly.
        best_unbalanced: its unbalanced string with the highest P(balanced), if any.
        best_balanced: its balanced string with the lowest P(balanced), if any.
    """

    name: str
    evaluations: int
    n_correct: int
    best_unbalanced: Finding | None
    best_balanced: Finding | None

    @property
    def accuracy(self) -> float:
        """Adversarial accuracy: the share of this stage's candidates the model gets right."""
        return self.n_correct / self.evaluations if self.evaluations else float("nan")


@dataclass(frozen=True)
class AttackResult:
    """The outcome of :func:`bracketlens.adversarial.attack`.

    Attributes:
        unbalanced: the top unbalanced findings, wrongest (highest P(balanced)) first.
        balanced: the top balanced findings, wrongest (lowest P(balanced)) first.
        stages: one summary per stage, in the order they ran.
        evaluations: strings scored in all (never more than ``budget``).
        budget: the evaluation budget the search was given.
        seed: the seed of its random choices.
    """

    unbalanced: tuple[Finding, ...]
    balanced: tuple[Finding, ...]
    stages: tuple[StageSummary, ...]
    evaluations: int
    budget: int
    seed: int

    @property
    def best(self) -> Finding | None:
        """The unbalanced string the model most confidently calls balanced."""
        return self.unbalanced[0] if self.unbalanced else None

    @property
    def adversarial_accuracy(self) -> float:
        """The share of all scored candidates that the model classifies correctly."""
        n_correct = sum(s.n_correct for s in self.stages)
        return n_correct / self.evaluations if self.evaluations else float("nan")

    def findings(self, top: int | None = None) -> list[Finding]:
        """The top ``top`` findings of each label (all kept if ``None``), wrongest first."""
        return ranked([*self.unbalanced[:top], *self.balanced[:top]])

    def to_records(self, top: int | None = None) -> list[dict[str, object]]:
        """:meth:`findings` as JSON-ready dicts ``{"string", "label", "p_balanced"}``."""
        return [f.to_dict() for f in self.findings(top)]

    def to_json(self, top: int | None = None) -> str:
        """:meth:`to_records` as a JSON list."""
        return json.dumps(self.to_records(top))


def rank_key(finding: Finding) -> tuple[float, str]:
    """Sort key: wrongest first, ties broken by the string so that order is reproducible."""
    return (-finding.wrongness, finding.string)


def ranked(findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` sorted wrongest first."""
    return sorted(findings, key=rank_key)


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large negative ``x``.

    >>> round(sigmoid(0.0), 3), sigmoid(-1000.0)
    (0.5, 0.0)
    """
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
