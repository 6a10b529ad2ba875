"""Interventions on the model: ablation, resampling, path and attribution patching.

``localise``, ``Localisation`` and ``RoleFinding`` are re-exported from
:mod:`bracketlens.localisation` (where they moved) for old callers.
"""

from bracketlens.verify.ablate import AblationEffect, ablate, component_names, mean_ablations


def __getattr__(name: str) -> object:
    # the pipeline imports this package, so its localisation is imported only when asked for
    if name in ("Localisation", "RoleFinding", "localise"):
        import importlib

        moved = importlib.import_module("bracketlens.verify.localise")
        value = getattr(moved, name)
        globals()[name] = value  # the function, not the submodule of the same name
        return value
    raise AttributeError(name)


__all__ = [
    "AblationEffect",
    "Localisation",
    "RoleFinding",
    "ablate",
    "component_names",
    "localise",
    "mean_ablations",
]
