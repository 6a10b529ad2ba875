"""The second, longer fit of the best models' rotations: where it starts and what it picks."""

from __future__ import annotations

import numpy as np
import torch

from bracketlens.algorithms.choice import Candidates
from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.refine import to_refine
from bracketlens.interventions.interchange import OrthogonalBasis, random_basis
from bracketlens.model.names import act_name


def test_a_basis_started_from_a_fitted_one_is_that_one_before_any_step() -> None:
    fitted = random_basis(56, 3, torch.Generator().manual_seed(4))
    again = OrthogonalBasis(56, 3, seed=9, init=fitted)()
    torch.testing.assert_close(again, fitted, atol=1e-5, rtol=0)
    assert not torch.allclose(OrthogonalBasis(56, 3, seed=9)(), fitted, atol=1e-2)


def _candidates(scores: list[list[float]]) -> Candidates:
    here = Location(Site(act_name("resid_mid", 1), None, 1), (0, 1))
    there = Location(Site(act_name("resid_pre", 2), None, 2), (0, 1, 2))
    basis = torch.eye(4)[:, :1]
    fits = (
        (here, 0, None),
        (here, 1, basis),
        (here, 4, basis),
        (there, 1, basis),
        (there, 8, basis),
    )
    chosen = tuple(fits[int(np.argmax(s))] for s in scores)
    return Candidates(None, fits, chosen, (0.9,) * len(scores), tuple(max(s) for s in scores),  # type: ignore[arg-type]
                      tuple(tuple(s) for s in scores))  # fmt: skip


def test_each_wanted_model_gets_its_best_rotations_refitted_once_and_no_whole_vector() -> None:
    found = _candidates([
        [0.5, 0.1, 0.3, 0.2, np.nan],  # the whole vector is best, and skipped: fits 2, 3
        [0.0, 0.1, 0.4, 0.0, 0.2],  # fits 2 (already picked) and 4
        [0.0, 0.9, 0.8, 0.7, 0.6],  # not wanted
    ])  # fmt: skip
    picked = to_refine(found, wanted=[0, 1], top=2)
    assert [(loc.site.label, dim) for loc, dim, _ in picked] == [
        ("resid_mid 1", 4),
        ("resid_pre 2", 1),
        ("resid_pre 2", 8),
    ]
