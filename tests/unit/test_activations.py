import pytest
import torch

from bracketlens import BracketLensError, tokenize
from bracketlens.activations import get_activations, layernorm_hook_names, run_and_reduce

TOKENS = tokenize(["()", "(())", ")(", "((()))()", "", "(((("], pad_to=12)


def test_only_requested_hooks_one_pass_equals_full_cache(random_model):
    names = ["blocks.1.attn.hook_pattern", "blocks.0.hook_mlp_out"]
    acts = get_activations(random_model, TOKENS, names, batch_size=4)
    assert set(acts) == set(names)
    _, cache = random_model.run_with_cache(TOKENS)
    for name in names:
        torch.testing.assert_close(acts[name], cache[name])


@pytest.mark.parametrize(
    "names",
    [["blocks.0.attn.hook_z", "blocks.1.hook_resid_post"], ["blocks.2.hook_resid_mid"],
     ["hook_embed", "blocks.0.hook_resid_post"], ["blocks.0.hook_resid_pre", "ln_final.hook_scale"]],
)  # fmt: skip
def test_stopping_after_the_last_block_asked_for_keeps_the_same_values(random_model, names):
    """A pass that ends after the last block a name is in (or runs to the end, for a name
    past the blocks) caches what the whole pass caches."""
    calls = []
    forward = random_model.forward
    random_model.forward = lambda *a, **k: calls.append(k.get("stop_at_layer")) or forward(*a, **k)
    try:
        acts = get_activations(random_model, TOKENS, names, stop_early=True)
    finally:
        del random_model.forward
    layers = [int(n.split(".")[1]) + 1 if n.startswith("blocks.") else 3 for n in names]
    assert calls == [max(layers) if max(layers) < 3 else None]
    full = get_activations(random_model, TOKENS, names)
    for name in names:
        torch.testing.assert_close(acts[name], full[name], rtol=0, atol=0)


def test_single_name_and_results_are_writable(random_model):
    acts = get_activations(random_model, TOKENS, "hook_embed")
    acts["hook_embed"] -= 1.0  # course code centres in place
    assert acts["hook_embed"].shape == (6, 12, 56)


def test_reducers_keep_only_what_is_asked(random_model):
    direction = torch.randn(56)
    out = run_and_reduce(
        random_model,
        TOKENS,
        {"blocks.2.hook_resid_post": [lambda a: a[:, 0] @ direction, lambda a: a[:, 1]]},
        batch_size=4,
    )
    proj, pos1 = out["blocks.2.hook_resid_post"]
    _, cache = random_model.run_with_cache(TOKENS)
    resid = cache["blocks.2.hook_resid_post"]
    torch.testing.assert_close(proj, resid[:, 0] @ direction)
    torch.testing.assert_close(pos1, resid[:, 1])


def test_unknown_hook_suggests_close_names(random_model):
    with pytest.raises(BracketLensError, match=r"did you mean blocks\.0\.attn\.hook_pattern"):
        get_activations(random_model, TOKENS, ["blocks.0.attn.hook_patern"])
    with pytest.raises(BracketLensError, match=r"unknown hook name 'xyz'$"):
        get_activations(random_model, TOKENS, ["xyz"])


def test_layernorm_hook_names(random_model):
    assert layernorm_hook_names(random_model, "ln_final") == (
        "blocks.2.hook_resid_post",
        "ln_final.hook_normalized",
    )
    assert layernorm_hook_names(random_model, "blocks.1.ln1") == (
        "blocks.1.hook_resid_pre",
        "blocks.1.ln1.hook_normalized",
    )
    assert layernorm_hook_names(random_model, "blocks.0.ln2") == (
        "blocks.0.hook_resid_mid",
        "blocks.0.ln2.hook_normalized",
    )
    for bad in ["blocks.3.ln1", "blocks.0.ln3", "ln", "blocks.x.ln1"]:
        with pytest.raises(BracketLensError, match="unknown LayerNorm"):
            layernorm_hook_names(random_model, bad)
