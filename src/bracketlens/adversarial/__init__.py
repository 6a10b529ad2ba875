"""Adversarial search: the strings a bracket classifier gets most confidently wrong.

>>> from bracketlens.adversarial import attack  # doctest: +SKIP
>>> result = attack(load_model("brackets_model_state_dict.pt"))  # doctest: +SKIP
>>> result.best.p_balanced > 0.999856  # beats the course's best A)(B string  # doctest: +SKIP
True
"""

from bracketlens.adversarial.attack import DEFAULT_BUDGET, attack
from bracketlens.adversarial.families import course_family, neighbours, tallest
from bracketlens.adversarial.result import AttackResult, Finding, StageSummary

__all__ = [
    "DEFAULT_BUDGET",
    "AttackResult",
    "Finding",
    "StageSummary",
    "attack",
    "course_family",
    "neighbours",
    "tallest",
]
