"""explain on the course checkpoint, on function-preserving edits of it, and on the compiled model."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from bracketlens import evaluation_set
from bracketlens.algorithms import KINDS, MODELS, PairCounts, Search, explain

# the layers between head 0.0 (which tallies) and head 2.0 (which reads position 1)
BETWEEN = {"z 0.0", "resid_mid 0", "mlp_post 0", "resid_post 0", "resid_pre 1", "z 1.0",
           "z 1.1", "resid_mid 1", "mlp_post 1", "resid_post 1", "resid_pre 2"}  # fmt: skip
COURSE = Search(counts=PairCounts(train=48, validation=32, test=64), screen_per_cell=16,
                das_top=1, das_dims=(1,), das_steps=20, confirm_models=0)  # fmt: skip
# DAS only (no whole-vector candidate), so that invariance is tested on a learned rotation
ROTATION = replace(COURSE, whole_vector=False, screen_per_cell=8, das_steps=30)
# A refitted rotation drifts with float rounding (the permuted or rescaled model's sums differ
# in the last bits): a few of the 192 test pairs, as seen between a checkpoint and its copy.
TOLERANCE = 0.05
# At MLP 0's output the elevation aligns weakly (IIA about 0.55) and a refitted 1-dimensional
# rotation wanders more: between the checkpoint and its neuron-permuted copy, explain seeds
# 0-7 gave IIA differences of 0.00 to 0.13. The location is the claim there; the IIA only has
# to stay in that band.
MLP_TOLERANCE = 0.15


_COURSE_MODEL = MODELS["elevation_and_negative"]
# the course's causal model with only the elevation interchanged (negative stays the base's)
ELEVATION_ONLY = replace(
    _COURSE_MODEL,
    name="elevation_only",
    variables=(_COURSE_MODEL.variables[0], replace(_COURSE_MODEL.variables[1], intervened=False)),
)


@pytest.fixture(scope="module")
def data():
    return evaluation_set(3000, seed=5)


@pytest.fixture(scope="module")
def course_explained(course_model, data):
    return explain(course_model, data, models=[ELEVATION_ONLY], search=COURSE)


def _best_to_unbalanced(
    explained, variable: str = "elevation"
) -> tuple[str, tuple[int, ...], float]:
    """The screened single-position location with the highest to-unbalanced IIA (first in forward order).

    Position 0 is left out: after the last layer's attention it holds the class
    itself, which carries any variable's counterfactual on to-unbalanced pairs.
    """
    screen = next(s for s in explained.screens if s.variable == variable)
    single = [j for j, p in enumerate(screen.positions) if len(p) == 1 and p != (0,)]
    to_unbalanced = screen.iia[:, single, KINDS.index("to_unbalanced")]
    i, j = np.unravel_index(np.nanargmax(to_unbalanced), to_unbalanced.shape)
    return screen.sites[i], screen.positions[single[j]], float(to_unbalanced[i, j])


def test_course_elevation_lives_at_position_1_between_heads_00_and_20(course_explained) -> None:
    site, positions, iia = _best_to_unbalanced(course_explained)
    assert positions == (1,)
    assert site in BETWEEN
    assert iia >= 0.9


def test_course_elevation_control_is_far_below(course_model, data, course_explained) -> None:
    site, _, _ = _best_to_unbalanced(course_explained)
    there = replace(COURSE, sites=lambda s: s.label == site, positions=lambda p: p == (1,))
    result = explain(course_model, data, models=[ELEVATION_ONLY], search=there)
    elevation = next(a for a in result.variables if a.variable == "elevation")
    assert elevation.location.positions == (1,)
    assert elevation.iia_by_kind["to_unbalanced"] >= 0.9  # on the test pairs this time
    control = elevation.control_by_kind["to_unbalanced"]
    assert control is not None and control <= elevation.iia_by_kind["to_unbalanced"] - 0.5
    # the other kinds are reported, whatever they are
    assert elevation.iia_by_kind["to_balanced"] is not None
    assert elevation.iia_by_kind["unchanged"] is not None


def _elevation(model, data, sites) -> tuple[str, float]:
    result = explain(model, data, models=[ELEVATION_ONLY], search=replace(ROTATION, sites=sites))
    a = next(a for a in result.variables if a.variable == "elevation")
    assert a.dim == 1
    return a.location.label, a.iia.value


def _layer0_heads(site) -> bool:
    return site.layer == 0 and site.head is not None


def test_swapping_heads_moves_the_aligned_head(course_model, data) -> None:
    swapped = copy.deepcopy(course_model)
    attn = swapped.blocks[0].attn
    with torch.no_grad():
        for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
            getattr(attn, name).copy_(getattr(attn, name).flip(0))
    where, iia = _elevation(copy.deepcopy(course_model), data, _layer0_heads)
    where_swapped, iia_swapped = _elevation(swapped, data, _layer0_heads)
    head = where.split()[1]  # "z 0.0 @ 1" -> "0.0"
    other = "0.1" if head == "0.0" else "0.0"
    assert where_swapped == where.replace(head, other)
    assert abs(iia - iia_swapped) <= TOLERANCE


def test_permuting_mlp_neurons_keeps_the_alignment(course_model, data) -> None:
    permuted = copy.deepcopy(course_model)
    mlp = permuted.blocks[0].mlp
    perm = torch.randperm(mlp.W_in.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mlp.W_in.copy_(mlp.W_in[:, perm])
        mlp.b_in.copy_(mlp.b_in[perm])
        mlp.W_out.copy_(mlp.W_out[perm])
    only_mlp = lambda s: s.label == "mlp_post 0"  # noqa: E731
    where, iia = _elevation(copy.deepcopy(course_model), data, only_mlp)
    where_permuted, iia_permuted = _elevation(permuted, data, only_mlp)
    assert where_permuted == where
    assert abs(iia - iia_permuted) <= MLP_TOLERANCE


def test_scaling_values_against_outputs_keeps_the_alignment(course_model, data) -> None:
    scaled = copy.deepcopy(course_model)
    attn, c = scaled.blocks[0].attn, 3.0
    with torch.no_grad():
        attn.W_V[0].mul_(c)
        attn.b_V[0].mul_(c)
        attn.W_O[0].div_(c)
    where, iia = _elevation(copy.deepcopy(course_model), data, _layer0_heads)
    where_scaled, iia_scaled = _elevation(scaled, data, _layer0_heads)
    assert where_scaled == where
    assert abs(iia - iia_scaled) <= TOLERANCE


def test_compiled_model_elevation_at_its_built_location(data) -> None:
    compiled = pytest.importorskip("bracketlens.compiled")
    model = compiled.build_compiled()
    # built: the zero test of the elevation at position 1 (MLP 0), read there by head 2.0
    read = replace(COURSE, sites=lambda s: s.hook == "blocks.2.hook_resid_pre")
    result = explain(model, data, models=[ELEVATION_ONLY], search=read)
    elevation = next(a for a in result.variables if a.variable == "elevation")
    assert elevation.location.positions == (1,)
    for kind, iia in elevation.iia_by_kind.items():
        assert iia is None or iia >= 0.99, kind
