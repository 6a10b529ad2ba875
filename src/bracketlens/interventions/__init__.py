"""Interventions on the model's activations: the hooks, the one runner, and the causal checks.

Every causal method in bracketlens writes activations through :mod:`.hooks`
(:func:`~.hooks.patch` replaces a component's values, or only their part in a
subspace, at chosen positions) and runs through :mod:`.runner` (:func:`~.runner.start_after`
says where a run patched at a hook starts; :func:`~.runner.run_patched` runs strings
in batches from there, :func:`~.runner.run_from` one batch). The checks built on them:
:mod:`.ablate` (mean and zero ablation), :mod:`.scrub` (resampling tests),
:mod:`.paths` (path patching), :mod:`.attribution_patching`, and
:mod:`.interchange` (interchange interventions and distributed alignment search,
which :mod:`bracketlens.algorithms` aligns causal models with).
"""

from bracketlens.interventions.hooks import Hook, Positions, constant, patch, set_at, zero
from bracketlens.interventions.interchange import (
    OrthogonalBasis,
    mix_rows,
    patch_rows,
    random_basis,
)
from bracketlens.interventions.runner import Start, StartPoint, run_from, run_patched, start_after

__all__ = ["Hook", "Positions", "constant", "patch", "set_at", "zero"]
__all__ += ["Start", "StartPoint", "run_from", "run_patched", "start_after"]
__all__ += ["OrthogonalBasis", "mix_rows", "patch_rows", "random_basis"]
