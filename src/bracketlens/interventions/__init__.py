"""Interventions on the model's activations: one hook module, one runner.

Every causal method in bracketlens (mean/zero/resample ablation, causal
scrubbing, path patching, attribution patching, interchange interventions and
distributed alignment search) writes activations through :mod:`.hooks`:
:func:`~.hooks.patch` replaces a component's values, or only their part in a
subspace, at chosen positions; :func:`~.hooks.run_patched` runs the model with
such hooks in batches and returns the class logits.
"""

from bracketlens.interventions.hooks import (
    Hook,
    Positions,
    Start,
    constant,
    patch,
    run_patched,
    set_at,
    zero,
)
from bracketlens.interventions.interchange import (
    OrthogonalBasis,
    mix_rows,
    patch_rows,
    random_basis,
)

__all__ = ["Hook", "Positions", "Start", "constant", "patch", "run_patched", "set_at", "zero"]
__all__ += ["OrthogonalBasis", "mix_rows", "patch_rows", "random_basis"]
