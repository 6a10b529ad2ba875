"""Split input hooks: each head's q/k/v input and each MLP's input as hooks of their own."""

import copy

import torch

from bracketlens import BracketTransformer, tokenize
from bracketlens.interventions.edges import split_inputs
from bracketlens.model.names import act_name

STRINGS = ["()", "(())()", "))((", "(((())))()()", "", "(" * 40, "())(()"]


def _float64(model: BracketTransformer) -> BracketTransformer:
    return copy.deepcopy(model).double()


def test_split_forward_equals_the_fused_one(random_model: BracketTransformer) -> None:
    model = _float64(random_model)
    tokens = tokenize(STRINGS)
    with torch.no_grad():
        fused = model(tokens)
        fused_0 = model(tokens, class_only=True)
        model.set_split_inputs(True)
        split = model(tokens)
        split_0 = model(tokens, class_only=True)
    torch.testing.assert_close(split, fused, rtol=0, atol=1e-12)
    torch.testing.assert_close(split_0, fused_0, rtol=0, atol=1e-12)


def test_split_hooks_fire_only_when_on(random_model: BracketTransformer) -> None:
    model = _float64(random_model)
    tokens = tokenize(STRINGS)
    names = [act_name(n, 1) for n in ("q_input", "k_input", "v_input", "mlp_in")]
    with torch.no_grad():
        _, off = model.run_with_cache(tokens, names_filter=names)
        model.set_split_inputs(True)
        _, on = model.run_with_cache(tokens, names_filter=names)
    assert len(off.cache_dict) == 0
    assert on[names[0]].shape == (len(STRINGS), tokens.shape[1], 2, 56)
    assert on[names[3]].shape == (len(STRINGS), tokens.shape[1], 56)
    torch.testing.assert_close(on[names[1]][:, :, 1], on[names[1]][:, :, 0], rtol=0, atol=0)


def test_one_heads_key_input_changes_that_head_alone(random_model: BracketTransformer) -> None:
    model = _float64(random_model)
    model.set_split_inputs(True)
    tokens = tokenize(STRINGS)

    def shift(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        act[:, :, 1] += torch.linspace(-1.0, 1.0, act.shape[-1], dtype=act.dtype)
        return act

    names = [act_name("result", 1)]
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens, names_filter=names)
        with model.hooks(fwd_hooks=[(act_name("k_input", 1), shift)]):
            _, patched = model.run_with_cache(tokens, names_filter=names)
    before, after = clean[names[0]], patched[names[0]]
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0], rtol=0, atol=0)
    assert (after[:, :, 1] - before[:, :, 1]).abs().max() > 1e-3


def test_class_only_sees_keys_and_values_inputs_at_every_position(
    random_model: BracketTransformer,
) -> None:
    model = _float64(random_model)
    model.set_split_inputs(True)
    tokens = tokenize(STRINGS)
    widths: dict[str, int] = {}

    def width(act: torch.Tensor, hook: object) -> None:
        widths[hook.name] = act.shape[1]  # type: ignore[attr-defined]

    names = [act_name(n, 2) for n in ("q_input", "k_input", "v_input", "mlp_in")]
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(n, width) for n in names], class_only=True)
    for name in names:
        assert (widths[name] == 1) == model.at_position_0_only(name), name


def test_one_pass_norms_equal_the_split_forward(random_model: BracketTransformer) -> None:
    model = _float64(random_model)
    tokens = tokenize(STRINGS)
    with torch.no_grad():
        fused = model(tokens)
        with split_inputs(model, one_pass=True):
            one_pass = model(tokens)
            one_pass_0 = model(tokens, class_only=True)
    torch.testing.assert_close(one_pass, fused, rtol=0, atol=1e-12)
    torch.testing.assert_close(one_pass_0, fused[:, :1], rtol=0, atol=1e-12)
    assert not any(block.ln1.one_pass for block in model.blocks)  # off again after


def test_one_pass_norms_give_the_split_forwards_gradients(random_model: BracketTransformer) -> None:
    model = _float64(random_model).requires_grad_(False)
    tokens = tokenize(STRINGS)
    grads = []
    for one_pass in (False, True):
        embed = model.embed_tokens(tokens).requires_grad_(True)
        with torch.enable_grad(), split_inputs(model, one_pass=one_pass):
            logits = model.forward_from(0, embed, tokens, class_only=True)[:, 0]
            grads.append(torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), embed)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-10)
    assert grads[0].abs().max() > 1e-2  # the gradient is not trivially zero
