"""Path patching of the elevation route (verify.paths)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from bracketlens import BracketLensError, evaluation_set
from bracketlens.circuits.elevation import Roles
from bracketlens.interventions.ablate import clean_run
from bracketlens.interventions.paths import (
    READ_ALL_PATHS,
    ROUTE,
    PathPatch,
    path_patch_elevation,
    path_patch_slices,
)
from bracketlens.model.names import act_name

DATA = evaluation_set(300, seed=8)


def test_patching_a_string_with_itself_changes_nothing(random_model):
    result = path_patch_elevation(random_model, DATA, Roles(), donors=torch.arange(len(DATA)))
    for effect in result.effects.values():
        assert max(abs(v) for v in effect.logit_diff_change.values()) < 1e-4
        assert effect.loss["all"] == pytest.approx(result.clean_loss["all"], abs=1e-5)


def test_the_route_is_silent_when_the_mlps_cannot_respond(random_model):
    """With every MLP writing a constant, the sender reaches head 2.0 only directly."""
    model = copy.deepcopy(random_model)
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.W_out.zero_()
    result = path_patch_elevation(model, DATA, Roles(2, 0, 1, 0), seed=1)
    route = result.effects[ROUTE].logit_diff_change
    everything = result.effects[READ_ALL_PATHS].logit_diff_change
    assert max(abs(v) for v in route.values()) < 1e-4
    assert abs(everything["all"]) > 1e-3  # the sender itself still matters
    direct = result.effects["sender -> head 2.0's value directly"].logit_diff_change
    assert abs(direct["all"]) > 1e-4


def test_effects_and_shares_on_a_random_model(random_model):
    result = path_patch_elevation(random_model, DATA, Roles(2, 1, 3, 1), seed=0)
    assert set(result.effects) >= {ROUTE, READ_ALL_PATHS, "sender at every position"}
    assert "MLPs -> head 2.0's value" in result.effects  # the other head is an alternative
    share = result.share()
    expected = (
        result.effects[ROUTE].logit_diff_change["all"]
        / result.effects[READ_ALL_PATHS].logit_diff_change["all"]
    )
    assert share["all"] == pytest.approx(expected)
    assert "head 0.1 at position 3" in result.route
    ci = result.share_interval("all")
    assert ci.value == pytest.approx(share["all"], rel=1e-9)
    assert ci.low <= ci.value <= ci.high and ci.n == len(DATA)
    assert result.share_interval("balanced").n == int(DATA.labels.sum())
    means_only = {k: dataclasses.replace(e, per_string=None) for k, e in result.effects.items()}
    with pytest.raises(BracketLensError, match="per-string"):
        PathPatch(result.route, result.clean_loss, means_only).share_interval("all")


def test_bad_roles_and_donors_are_refused(random_model):
    with pytest.raises(BracketLensError, match="after layer 0"):
        path_patch_elevation(random_model, DATA, Roles(0, 0, 1, 0))
    with pytest.raises(BracketLensError, match="donors"):
        path_patch_elevation(random_model, DATA, Roles(), donors=torch.arange(3))
    with pytest.raises(BracketLensError, match="head"):
        path_patch_elevation(random_model, DATA, Roles(2, 4, 1, 0))


def test_the_ablations_clean_pass_gives_the_same_effects(random_model):
    """Slices kept by the ablations' clean pass stand in for path patching's own pass."""
    roles = Roles(2, 1, 3, 1)
    clean = clean_run(random_model, DATA, keep=path_patch_slices(roles, 2))
    kept = path_patch_elevation(random_model, DATA, roles, seed=0, clean=clean.acts)
    own = path_patch_elevation(random_model, DATA, roles, seed=0)
    for key, effect in own.effects.items():
        for group, value in effect.logit_diff_change.items():
            assert kept.effects[key].logit_diff_change[group] == pytest.approx(value, abs=1e-5)


@pytest.mark.parametrize("everywhere", [False, True])
def test_sender_references_match_a_whole_run_with_the_head_patched(random_model, everywhere):
    """The references start after layer 0's attention with the sender's change added;
    they equal a whole run with the tally head's output swapped for its donor's."""
    from bracketlens.interventions import patch, run_patched

    roles = Roles(2, 1, 3, 1)
    donors = torch.from_numpy(np.random.default_rng(4).permutation(len(DATA)))
    result = path_patch_elevation(random_model, DATA, roles, donors=donors)
    name = "blocks.0.attn.hook_result"
    _, cache = random_model.run_with_cache(DATA.tokens, names_filter=name)
    source = cache[name][donors]
    positions = None if everywhere else [roles.read_position]
    logits = run_patched(
        random_model,
        DATA.tokens,
        per_batch=lambda rows: [(name, patch(source[rows], head=1, positions=positions))],
    )
    clean = random_model(DATA.tokens)[:, 0]
    want = (logits[:, 1] - logits[:, 0]) - (clean[:, 1] - clean[:, 0])
    key = "sender at every position" if everywhere else READ_ALL_PATHS
    got = torch.from_numpy(result.effects[key].per_string).float()
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_the_route_matches_whole_runs_with_hooks(random_model):
    """Every elevation-layer path against whole hooked runs: the MLPs' response recorded
    with the sender patched and layer 1's attention frozen, then each head's value (or
    key) at the read position recomputed from it."""
    roles = Roles(2, 1, 3, 1)
    layer, pos = 2, 3
    donors = torch.from_numpy(np.random.default_rng(5).permutation(len(DATA)))
    result = path_patch_elevation(random_model, DATA, roles, donors=donors)
    tokens = DATA.tokens
    logits, cache = random_model.run_with_cache(tokens)
    sender = cache["blocks.0.attn.hook_result"][donors][:, :, 1]
    recorded = {}

    def patch_sender(act, hook):
        act = act.clone()
        act[:, pos, 1] = sender[:, pos]
        return act

    def record(act, hook):
        recorded[hook.name] = act[:, pos].clone()

    with torch.no_grad():
        random_model.run_with_hooks(
            tokens,
            fwd_hooks=[
                ("blocks.0.attn.hook_result", patch_sender),
                ("blocks.1.hook_attn_out", lambda act, hook: cache["blocks.1.hook_attn_out"]),
                ("blocks.0.hook_mlp_out", record),
                ("blocks.1.hook_mlp_out", record),
            ],
        )
        via = cache["blocks.2.hook_resid_pre"][:, pos] + sum(
            recorded[n] - cache[n][:, pos]
            for n in ("blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out")
        )
        normed = random_model.blocks[layer].ln1(via)
        clean_diff = logits[:, 0, 1] - logits[:, 0, 0]
        for key, kind, h in [
            (ROUTE, "v", 1),
            ("MLPs -> head 2.0's value", "v", 0),
            ("MLPs -> head 2.0's key", "k", 0),
            ("MLPs -> head 2.1's key", "k", 1),
        ]:
            w = random_model.W_V if kind == "v" else random_model.W_K
            b = random_model.b_V if kind == "v" else random_model.b_K
            new = normed @ w[layer, h] + b[layer, h]

            def set_new(act, hook, new=new, h=h):
                act = act.clone()
                act[:, pos, h] = new
                return act

            patched = random_model.run_with_hooks(
                tokens, fwd_hooks=[(act_name(kind, layer), set_new)]
            )[:, 0]
            want = patched[:, 1] - patched[:, 0] - clean_diff
            got = torch.from_numpy(result.effects[key].per_string).float()
            torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4, msg=key)
