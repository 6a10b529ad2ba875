import math

import pytest
import torch
from transformer_lens import ActivationCache, FactoredMatrix

from bracketlens import BracketLensError, BracketTransformer, tokenize
from bracketlens.data.tokens import N_CTX, PAD
from bracketlens.model.layers import IGNORE
from bracketlens.model.names import act_name

STRINGS = ["()", "(())()", "))((", "(((())))()()", "", "(" * 40]


def reference_forward(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The forward pass written directly in torch ops on a state dict."""

    def ln(x, w, b):
        x = x - x.mean(-1, keepdim=True)
        return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * w + b

    x = state["embed.W_E"][tokens] + state["pos_embed.W_pos"][: tokens.shape[1]]
    key_is_pad = tokens == PAD
    for layer in range(3):
        p = f"blocks.{layer}."
        h = ln(x, state[p + "ln1.w"], state[p + "ln1.b"])
        out = state[p + "attn.b_O"].clone()
        for head in range(2):
            q = h @ state[p + "attn.W_Q"][head] + state[p + "attn.b_Q"][head]
            k = h @ state[p + "attn.W_K"][head] + state[p + "attn.b_K"][head]
            v = h @ state[p + "attn.W_V"][head] + state[p + "attn.b_V"][head]
            scores = q @ k.transpose(-1, -2) / math.sqrt(28)
            scores[key_is_pad[:, None, :].expand_as(scores)] = IGNORE
            out = out + scores.softmax(-1) @ v @ state[p + "attn.W_O"][head]
        x = x + out
        h = ln(x, state[p + "ln2.w"], state[p + "ln2.b"])
        pre = h @ state[p + "mlp.W_in"] + state[p + "mlp.b_in"]
        x = x + pre.relu() @ state[p + "mlp.W_out"] + state[p + "mlp.b_out"]
    x = ln(x, state["ln_final.w"], state["ln_final.b"])
    return x @ state["unembed.W_U"] + state["unembed.b_U"]


def test_matches_reference_forward(random_model):
    tokens = tokenize(STRINGS)
    want = reference_forward(random_model.state_dict(), tokens)
    torch.testing.assert_close(random_model(tokens), want, atol=1e-5, rtol=1e-5)


def test_logits_do_not_depend_on_padding(random_model):
    short = random_model(tokenize(STRINGS))[:, 0]
    padded = random_model(tokenize(STRINGS, pad_to=N_CTX))[:, 0]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=0)
    alone = torch.cat([random_model(tokenize(s))[:, 0] for s in STRINGS])
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_cached_scores_show_the_pad_mask(random_model):
    tokens = tokenize(["()", "(())"])
    _, cache = random_model.run_with_cache(tokens, names_filter=lambda n: "attn_scores" in n)
    assert isinstance(cache, ActivationCache)
    assert set(cache.keys()) == {act_name("attn_scores", i) for i in range(3)}
    scores = cache["blocks.0.attn.hook_attn_scores"]
    assert scores.shape == (2, 2, 6, 6)
    assert (scores[0, :, :, 4:] == IGNORE).all()  # pad keys of "()"
    assert (scores[1] > IGNORE).all()


def test_hook_names_are_transformer_lens_names(random_model):
    names = set(random_model.hook_dict)
    for want in [
        "hook_tokens",
        "hook_embed",
        "hook_pos_embed",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_resid_post",
        "blocks.1.ln1.hook_scale",
        "blocks.1.ln2.hook_normalized",
        "blocks.1.attn.hook_q",
        "blocks.1.attn.hook_k",
        "blocks.1.attn.hook_v",
        "blocks.1.attn.hook_attn_scores",
        "blocks.1.attn.hook_pattern",
        "blocks.1.attn.hook_z",
        "blocks.1.attn.hook_result",
        "blocks.1.hook_attn_out",
        "blocks.1.mlp.hook_pre",
        "blocks.1.mlp.hook_post",
        "blocks.1.hook_mlp_out",
        "ln_final.hook_scale",
        "ln_final.hook_normalized",
    ]:
        assert want in names


def test_ln_normalized_is_after_the_affine_map(random_model):
    tokens = tokenize(["(())"])
    _, cache = random_model.run_with_cache(tokens)
    x = cache["blocks.2.hook_resid_post"]
    ln = random_model.ln_final
    x = x - x.mean(-1, keepdim=True)
    want = x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * ln.w + ln.b
    torch.testing.assert_close(cache["ln_final.hook_normalized"], want)


def test_head_results_sum_to_attention_output(random_model):
    _, cache = random_model.run_with_cache(tokenize(STRINGS))
    for layer in range(3):
        result = cache[act_name("result", layer)]
        assert result.shape == (len(STRINGS), 42, 2, 56)
        total = result.sum(2) + random_model.blocks[layer].attn.b_O
        torch.testing.assert_close(total, cache[act_name("attn_out", layer)])


def test_activation_cache_tools_work(random_model):
    tokens = tokenize(STRINGS)
    _, cache = random_model.run_with_cache(tokens)
    heads, labels = cache.stack_head_results(layer=-1, return_labels=True)
    assert heads.shape == (6, len(STRINGS), 42, 56)
    assert labels[:2] == ["L0H0", "L0H1"]
    parts = cache.decompose_resid(layer=-1, return_labels=False)
    torch.testing.assert_close(parts.sum(0), cache["blocks.2.hook_resid_post"], atol=1e-4, rtol=0)


def test_stacked_weights_and_factored_matrices(random_model):
    m = random_model
    assert m.W_Q.shape == (3, 2, 56, 28) and m.W_O.shape == (3, 2, 28, 56)
    assert m.W_in.shape == (3, 56, 56) and m.W_out.shape == (3, 56, 56)
    assert m.b_O.shape == (3, 56) and m.W_U.shape == (56, 2) and m.W_E.shape == (5, 56)
    assert isinstance(m.OV, FactoredMatrix)
    torch.testing.assert_close(m.OV[1, 0].AB, m.W_V[1, 0] @ m.W_O[1, 0])
    torch.testing.assert_close(m.QK[2, 1].AB, m.W_Q[2, 1] @ m.W_K[2, 1].T)


def test_perma_hooks_and_run_with_hooks(random_model):
    model = BracketTransformer(random_model.cfg)
    model.load_state_dict(random_model.state_dict())
    tokens = tokenize(["(())"])
    base = model(tokens)
    zeroed = model.run_with_hooks(
        tokens, fwd_hooks=[("blocks.2.hook_attn_out", lambda t, hook: torch.zeros_like(t))]
    )
    assert not torch.allclose(base, zeroed)
    torch.testing.assert_close(model(tokens), base)  # the hook was removed afterwards
    model.add_perma_hook("blocks.2.hook_attn_out", lambda t, hook: torch.zeros_like(t))
    torch.testing.assert_close(model(tokens), zeroed)
    model.reset_hooks(including_permanent=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_init_is_seeded(seed):
    a, b = BracketTransformer(), BracketTransformer()
    a.init_weights(seed)
    b.init_weights(seed)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_class_only_computes_position_0_alone_where_the_model_says(random_model):
    """`at_position_0_only` names exactly the hooks a class_only pass sees one position of,
    and that pass gives the full pass's class logits."""
    tokens = tokenize(STRINGS)
    widths: dict[str, int] = {}

    def width(act: torch.Tensor, hook) -> None:
        queries = 2 if hook.name.endswith(("attn_scores", "pattern")) else 1  # [b, h, q, k]
        widths[hook.name] = act.shape[queries]

    split = ("hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in")  # off by default
    hooks = [
        (name, width)
        for name in random_model.hook_dict
        if name != "hook_tokens" and not name.endswith(split)
    ]
    with torch.no_grad():
        logits = random_model.run_with_hooks(tokens, fwd_hooks=hooks, class_only=True)
        full = random_model(tokens)
    assert len(widths) == len(hooks)
    for name, w in widths.items():
        assert (w == 1) == random_model.at_position_0_only(name), name
    torch.testing.assert_close(logits[:, 0], full[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("class_only", [False, True])
def test_a_run_can_start_at_any_block_or_its_mlp_half(random_model, class_only):
    """From a clean run's hook_resid_pre or hook_resid_mid of any block (or the last
    block's output), the rest of the model gives the same logits."""
    tokens = tokenize(STRINGS)
    logits, cache = random_model.run_with_cache(tokens)
    n = random_model.cfg.n_layers
    want = logits[:, :1] if class_only else logits
    with torch.no_grad():
        for layer in range(n + 1):
            pre = (
                cache[act_name("resid_pre", layer)]
                if layer < n
                else cache[act_name("resid_post", n - 1)]
            )
            got = random_model.forward_from(layer, pre, tokens, class_only=class_only)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            if layer < n:
                mid = cache[act_name("resid_mid", layer)]
                got = random_model.forward_from(layer, mid, tokens, class_only=class_only, mid=True)
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        after_0 = random_model.run_blocks(cache["blocks.0.hook_resid_mid"], tokens, 0, 1, mid=True)
    torch.testing.assert_close(after_0, cache["blocks.1.hook_resid_pre"], rtol=1e-5, atol=1e-5)


def test_layernorm_in_place_without_grad_gives_the_same_numbers(random_model):
    tokens = tokenize(STRINGS)
    with torch.no_grad():
        fast = random_model(tokens)
    assert torch.equal(fast, random_model(tokens).detach())


def test_a_pass_cannot_stop_past_the_last_block(random_model):
    with pytest.raises(BracketLensError, match="stop_at_layer"):
        random_model(tokenize(["()"]), stop_at_layer=3)
