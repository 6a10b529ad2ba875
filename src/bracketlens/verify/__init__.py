"""Verify: localise the circuit's roles in any model and test them causally."""

from bracketlens.verify.ablate import AblationEffect, ablate, component_names
from bracketlens.verify.localise import Localisation, RoleFinding, localise

__all__ = [
    "AblationEffect",
    "Localisation",
    "RoleFinding",
    "ablate",
    "component_names",
    "localise",
]
