"""Moved: localisation is :mod:`bracketlens.localisation` (re-exported here)."""

from bracketlens.localisation import Localisation, RoleFinding, group_medians
from bracketlens.pipeline import localise

__all__ = ["Localisation", "RoleFinding", "group_medians", "localise"]
