"""Interventions on the model: ablation, resampling, path and attribution patching.

``localise``, ``Localisation`` and ``RoleFinding`` are re-exported from
:mod:`bracketlens.localisation` (where they moved) for old callers.
"""

from bracketlens.verify.ablate import AblationEffect, ablate, component_names, mean_ablations


def __getattr__(name: str) -> object:
    # the pipeline imports this package, so its localisation is imported only when asked
    # for. There is no submodule of that name: importing one would set this package's
    # ``localise`` to the module, and ``from bracketlens.verify import localise`` would
    # then give the module instead of the function.
    if name in ("Localisation", "RoleFinding"):
        from bracketlens import localisation

        value = getattr(localisation, name)
    elif name == "localise":
        from bracketlens.pipeline import localise as value
    else:
        raise AttributeError(name)
    globals()[name] = value
    return value


__all__ = [
    "AblationEffect",
    "Localisation",
    "RoleFinding",
    "ablate",
    "component_names",
    "localise",
    "mean_ablations",
]
