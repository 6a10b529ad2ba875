"""The one replacement hook: whole-vector and subspace patches, positions and heads."""

from __future__ import annotations

import copy

import pytest
import torch

from bracketlens import BracketLensError
from bracketlens.components import Component, all_components
from bracketlens.data.tokens import PAD, tokenize
from bracketlens.interventions import patch, run_patched, set_at, zero
from bracketlens.interventions.runner import Start, Stop
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name


def test_component_labels_hooks_and_parsing() -> None:
    head, mlp = Component.at(2, 0), Component.at(1)
    assert (head.label, head.short, head.hook_name) == (
        "head 2.0",
        "2.0",
        "blocks.2.attn.hook_result",
    )
    assert (mlp.label, mlp.hook_name, mlp.z_hook_name) == (
        "mlp 1",
        "blocks.1.hook_mlp_out",
        "blocks.1.mlp.hook_post",
    )
    assert Component.parse("head 2.1") == Component.parse("2.1") == Component.at(2, 1)
    assert [c.label for c in all_components(ModelConfig())][:3] == ["head 0.0", "head 0.1", "mlp 0"]
    with pytest.raises(BracketLensError, match="unknown component"):
        Component.parse("neuron 3")
    with pytest.raises(BracketLensError, match=r"each layer has heads 0\.\.1"):
        Component.at(0, 5).check(ModelConfig())


def test_patch_writes_only_chosen_positions_and_head() -> None:
    act = torch.zeros(2, 5, 2, 3)
    source = torch.arange(2 * 6 * 2 * 3, dtype=torch.float32).reshape(2, 6, 2, 3)
    out = patch(source, head=1, positions=[1, 3])(act, None)
    torch.testing.assert_close(out[:, [1, 3], 1], source[:, [1, 3], 1])
    out[:, [1, 3], 1] = 0
    assert out.abs().sum() == 0  # nothing else touched, source trimmed to width 5
    assert act.abs().sum() == 0  # the activation itself is not modified in place


def test_patch_in_a_subspace_swaps_only_that_part() -> None:
    gen = torch.Generator().manual_seed(0)
    act, source = torch.randn(4, 3, 6, generator=gen), torch.randn(4, 3, 6, generator=gen)
    basis, _ = torch.linalg.qr(torch.randn(6, 2, generator=gen))
    out = patch(source, positions=2, basis=basis)(act, None)
    # inside the subspace: the source's coordinates; outside: the base's
    torch.testing.assert_close(out[:, 2] @ basis, source[:, 2] @ basis)
    orth = torch.eye(6) - basis @ basis.T
    torch.testing.assert_close(out[:, 2] @ orth, act[:, 2] @ orth)
    torch.testing.assert_close(out[:, :2], act[:, :2])


def test_set_at_and_zero() -> None:
    act = torch.ones(2, 4, 3)
    torch.testing.assert_close(
        set_at(torch.full((2, 3), 7.0), 1)(act, None)[:, 1], torch.full((2, 3), 7.0)
    )
    assert zero(positions=[0, 3])(act, None)[:, [0, 3]].abs().sum() == 0


def test_run_patched_is_a_plain_run_without_hooks_and_patches_per_batch(random_model) -> None:
    tokens = tokenize(["(())", "()", ")(", "((()))", "(()"])
    plain = random_model(tokens)[:, 0]
    torch.testing.assert_close(run_patched(random_model, tokens, batch_size=2), plain)
    # resampling every string's MLP 0 output from itself is a no-op
    name = Component.at(0).hook_name
    from bracketlens.activations import get_activations

    own = get_activations(random_model, tokens, name)[name]
    same = run_patched(
        random_model, tokens, batch_size=2, per_batch=lambda rows: [(name, patch(own[rows]))]
    )
    torch.testing.assert_close(same, plain, atol=1e-5, rtol=1e-5)
    ablated = run_patched(random_model, tokens, [(name, zero())])
    assert (ablated - plain).abs().max() > 1e-3


def test_run_patched_stops_at_a_blocks_input_or_after_its_attention(random_model) -> None:
    model = copy.deepcopy(random_model).double()  # float64: the runs agree to rounding
    tokens = tokenize(["(())", "()", ")(", "((()))", "(()"])
    names = [act_name("resid_pre", 1), act_name("resid_mid", 1), act_name("resid_mid", 2)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    real = (tokens != PAD)[:, :, None]
    at_1 = run_patched(model, tokens, batch_size=2, stop=Stop(1))
    torch.testing.assert_close(at_1 * real, cache[names[0]] * real, rtol=0, atol=1e-9)
    start = Start(1, cache[names[0]])
    mid_1 = run_patched(model, tokens, batch_size=2, start=start, stop=Stop(1, mid=True))
    torch.testing.assert_close(mid_1 * real, cache[names[1]] * real, rtol=0, atol=1e-9)
    # past the last block's attention, the run computes position 0 alone
    mid_2 = run_patched(model, tokens, batch_size=2, stop=Stop(2, mid=True))
    assert mid_2.shape == (len(tokens), 1, model.cfg.d_model)
    torch.testing.assert_close(mid_2[:, 0], cache[names[2]][:, 0], rtol=0, atol=1e-9)
    with pytest.raises(BracketLensError, match="cannot stop"):
        run_patched(model, tokens, start=Start(1, cache[names[0]], mid=True), stop=Stop(1))
