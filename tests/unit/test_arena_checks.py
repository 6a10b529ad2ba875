"""The exercise checker: independent right answers pass, each common mistake is named.

The right answers here are written from scratch (einsums over ``run_with_cache``
activations, float64 least squares), not with the library, so a pass means two
implementations agree within the stated tolerance.
"""

import dataclasses
import math
from types import SimpleNamespace

import einops
import pytest
import torch
from sklearn.linear_model import LinearRegression

from bracketlens import BracketTransformer, evaluation_set
from bracketlens.arena import BracketsDataset, SimpleTokenizer
from bracketlens.arena import checks as arena_checks
from bracketlens.arena.checks import CheckResult
from bracketlens.model.names import act_name

_SOURCE = evaluation_set(120, seed=11)
DATA = BracketsDataset(list(zip(_SOURCE.strings, _SOURCE.labels.tolist(), strict=True)))
SMALL = DATA[:40]  # for the [batch, seq, neuron, d_model] tensors
TOKENIZER = SimpleTokenizer("()")
LN_BEFORE = {"ln1": "hook_resid_pre", "ln2": "hook_resid_mid"}


@pytest.fixture(scope="module")
def model() -> BracketTransformer:
    """Random weights, large enough for peaked attention, and LayerNorms with a real affine map."""
    m = BracketTransformer()
    m.init_weights(seed=7)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.split(".")[-1].startswith(("W_", "b_")):
                p.mul_(25.0)
            elif name.endswith(".w"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".b"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return m.eval().requires_grad_(False)


def cache_of(model, toks):
    _, cache = model.run_with_cache(toks)
    return cache


def assert_fails(result: CheckResult, phrase: str) -> None:
    assert isinstance(result, CheckResult)
    assert not result.passed, result.message
    assert phrase in result.message, result.message


def assert_passes(result: CheckResult) -> None:
    assert result.passed, result.message
    assert result.shape_mismatch is None
    assert result.max_abs_error is not None


def assert_outcome(result: CheckResult, phrase: str | None) -> None:
    """A pass when no mistake is expected, else a failure whose message names it."""
    if phrase is None:
        assert_passes(result)
    else:
        assert_fails(result, phrase)


# ---------------------------------------------------------------- independent answers


def lstsq_fit(x, y):
    """Float64 least squares with an intercept column; r^2 averaged over outputs as sklearn."""
    design = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y.double()).solution
    residual = ((y.double() - design @ solution) ** 2).sum(0)
    total = ((y.double() - y.double().mean(0)) ** 2).sum(0)
    fit = SimpleNamespace(coef_=solution[:-1].T.numpy(), intercept_=solution[-1].numpy())
    return fit, float((1 - residual / total).mean())


def ln_name(model, layernorm):
    return next(n for n, m in model.named_modules() if m is layernorm)


def ln_arrays(model, data, layernorm, seq_pos, *, affine=True):
    name = ln_name(model, layernorm)
    if name == "ln_final":
        before = act_name("resid_post", model.cfg.n_layers - 1)
    else:
        _, layer, ln = name.split(".")
        before = f"blocks.{layer}.{LN_BEFORE[ln]}"
    cache = cache_of(model, data.toks)
    x, y = cache[before], cache[f"{name}.hook_normalized"]
    if not affine:
        y = (y - layernorm.b) / layernorm.w
    if seq_pos is None:
        return einops.rearrange(x, "b s d -> (b s) d"), einops.rearrange(y, "b s d -> (b s) d")
    return x[:, seq_pos], y[:, seq_pos]


def good_ln_fit(model, data, layernorm, seq_pos=None):
    return lstsq_fit(*ln_arrays(model, data, layernorm, seq_pos))


def good_post_dir(model):
    return model.W_U @ torch.tensor([1.0, -1.0])


def good_pre_final_dir(model, data):
    fit, _ = good_ln_fit(model, data, model.ln_final, 0)
    return torch.from_numpy(fit.coef_).float().T @ good_post_dir(model)


def good_components(model, data):
    cache = cache_of(model, data.toks)
    parts = [cache["hook_embed"] + cache["hook_pos_embed"]]
    for layer in range(model.cfg.n_layers):
        z = cache[act_name("z", layer)]
        for head in range(model.cfg.n_heads):
            parts.append(
                einops.einsum(z[:, :, head], model.W_O[layer, head], "b s h, h m -> b s m")
            )
        parts.append(cache[act_name("mlp_out", layer)])
    return torch.stack(parts)


def good_wov(model, layer, head):
    return einops.einsum(model.W_V[layer, head], model.W_O[layer, head], "i h, h o -> i o")


def good_pre_20_dir(model, data):
    fit, _ = good_ln_fit(model, data, model.blocks[2].ln1, 1)
    coef = torch.from_numpy(fit.coef_).float()
    return coef.T @ good_wov(model, 2, 0) @ good_pre_final_dir(model, data)


def centred(values, isbal):
    return values - values[:, isbal].mean(1, keepdim=True)


def good_attn_probs(model, data, layer, head):
    cache = cache_of(model, data.toks)
    q = cache[act_name("q", layer)][:, :, head]
    k = cache[act_name("k", layer)][:, :, head]
    scores = einops.einsum(q, k, "b q d, b k d -> b q k") / math.sqrt(q.shape[-1])
    scores = scores.masked_fill((data.toks == 1)[:, None, :], float("-inf"))
    return scores.softmax(-1)


def good_out_by_neuron(model, data, layer, seq=None):
    post = cache_of(model, data.toks)[act_name("post", layer)]
    out = einops.einsum(post, model.W_out[layer], "b s n, n d -> b s n d")
    return out if seq is None else out[:, seq]


def good_neuron_in_20_dir(model, data, layer):
    post = cache_of(model, data.toks)[act_name("post", layer)][:, 1]
    return post * (model.W_out[layer] @ good_pre_20_dir(model, data))


def good_q_and_k(model, tokenizer, parens, layer):
    cache = cache_of(model, tokenizer.tokenize(parens))
    return cache[act_name("q", layer)][0], cache[act_name("k", layer)][0]


def good_avg_squared_cos_sim(v, n_samples=1000):
    samples = torch.randn(n_samples, v.shape[0])
    cos = torch.cosine_similarity(samples, v[None], dim=1)
    return cos.pow(2).mean().item()


def is_balanced_by_removal(parens):
    while "()" in parens:
        parens = parens.replace("()", "")
    return parens == ""


def failures_by_loop(toks):
    elevation, negative = [], []
    for s in TOKENIZER.decode(toks):
        height, went_up = 0, False
        for c in reversed(s):
            height += 1 if c == "(" else -1
            went_up |= height > 0
        elevation.append(height != 0)
        negative.append(went_up)
    return torch.tensor(elevation), torch.tensor(negative)


def failures_left_to_right(toks):
    steps = (toks == 3).int() - (toks == 4).int()
    depth = steps.cumsum(-1)
    return depth[:, -1] != 0, (depth < 0).any(-1)


# ---------------------------------------------------------------- results and aliases


def test_result_is_frozen_and_checks_never_print(model, capsys):
    result = arena_checks.check_get_WOV(good_wov, model)
    assert capsys.readouterr().out == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = False  # type: ignore[misc]


def test_course_alias_prints_one_line_or_raises(model, capsys):
    arena_checks.test_get_WOV(good_wov, model)
    assert capsys.readouterr().out == "All tests in `test_get_WOV` passed!\n"
    with pytest.raises(AssertionError, match="transpose"):
        arena_checks.test_get_WOV(lambda m, lay, h: good_wov(m, lay, h).T, model)
    assert capsys.readouterr().out == ""


def test_every_check_has_an_alias_and_a_tolerance():
    for name in arena_checks.__all__:
        if name.startswith("check_"):
            course_name = name.removeprefix("check_")
            alias = getattr(arena_checks, "test_" + course_name)
            assert alias.__name__ == "test_" + course_name
            assert course_name in arena_checks.TOLERANCES, course_name
    assert arena_checks.TOLERANCES["get_pre_20_dir"].rtol == pytest.approx(1e-3)
    assert arena_checks.TOLERANCES["get_WOV"].atol == pytest.approx(1e-5)


def test_a_learner_exception_is_a_failed_result(model):
    result = arena_checks.check_get_attn_probs(lambda m, d, lay, h: 1 / 0, model, DATA)
    assert_fails(result, "raised ZeroDivisionError: division by zero")
    assert result.max_abs_error is None


def test_a_wrong_type_is_a_failed_result(model):
    result = arena_checks.check_get_WOV(lambda m, lay, h: [[1.0]], model)
    assert_fails(result, "returned a list; expected a tensor")


# ---------------------------------------------------------------- attribution


def test_get_activations(model):
    def good(model, toks, names):
        _, cache = model.run_with_cache(toks, names_filter=names)
        return cache[names] if isinstance(names, str) else cache

    assert_passes(arena_checks.check_get_activations(good, model, DATA))
    cache_always = arena_checks.check_get_activations(
        lambda m, t, names: cache_of(m, t), model, DATA
    )
    assert_fails(cache_always, "for a single name return the tensor itself")
    first_only = arena_checks.check_get_activations(
        lambda m, t, names: cache_of(m, t)[names if isinstance(names, str) else names[0]],
        model,
        DATA,
    )
    assert_fails(first_only, "for a list of names return the ActivationCache")
    dict_missing = arena_checks.check_get_activations(
        lambda m, t, names: good(m, t, names) if isinstance(names, str) else {}, model, DATA
    )
    assert_fails(dict_missing, "has no entry 'blocks.0.hook_resid_post'")


def test_get_post_final_ln_dir(model):
    assert_passes(arena_checks.check_get_post_final_ln_dir(good_post_dir, model))
    result = arena_checks.check_get_post_final_ln_dir(lambda m: -good_post_dir(m), model)
    assert_fails(result, "wrong sign")
    result = arena_checks.check_get_post_final_ln_dir(lambda m: m.W_U[:, 0], model)
    assert_fails(result, "you returned W_U[:, 0]")


def test_get_ln_fit_accepts_an_independent_fit(model):
    result = arena_checks.check_get_ln_fit(good_ln_fit, model, DATA)
    assert_passes(result)
    assert "5 cases" in result.message


def no_intercept_fit(model, data, layernorm, seq_pos=None):
    x, y = ln_arrays(model, data, layernorm, seq_pos)
    reg = LinearRegression(fit_intercept=False).fit(x.numpy(), y.numpy())
    return reg, reg.score(x.numpy(), y.numpy())


def no_affine_fit(model, data, layernorm, seq_pos=None):
    return lstsq_fit(*ln_arrays(model, data, layernorm, seq_pos, affine=False))


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (no_intercept_fit, "no intercept"),
        (no_affine_fit, "before its affine map"),
        (lambda m, d, ln, seq_pos=None: good_ln_fit(m, d, ln, None), "pools every position"),
        (lambda m, d, ln, seq_pos=None: good_ln_fit(m, d, ln, 0), "with seq_pos=None pool all"),
        (lambda m, d, ln, seq_pos=None: good_ln_fit(m, d, ln, seq_pos)[0], "expected a tuple"),
    ],
)
def test_get_ln_fit_mistakes(model, fn, phrase):
    assert_fails(arena_checks.check_get_ln_fit(fn, model, DATA), phrase)


def fit_coef(model, data, position):
    fit, _ = good_ln_fit(model, data, model.ln_final, position)
    return torch.from_numpy(fit.coef_).float()


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_pre_final_dir, None),
        (lambda m, d: -good_pre_final_dir(m, d), "wrong sign"),
        (lambda m, d: fit_coef(m, d, 0) @ good_post_dir(m), "instead of its transpose"),
        (lambda m, d: good_post_dir(m), "you returned the post-LN direction"),
        (lambda m, d: fit_coef(m, d, None).T @ good_post_dir(m), "pools every position"),
        (lambda m, d: fit_coef(m, d, 1).T @ good_post_dir(m), "is at position 1"),
    ],
)
def test_get_pre_final_ln_dir(model, fn, phrase):
    result = arena_checks.check_get_pre_final_ln_dir(fn, model, DATA)
    assert_outcome(result, phrase)


def reorder(components):
    # MLP before the heads in each layer: 0, mlp0, h0.0, h0.1, ...
    order = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
    return components[order]


def token_embeds_only(model, data):
    out = good_components(model, data)
    out[0] = cache_of(model, data.toks)["hook_embed"]
    return out


def per_layer_attention(model, data):
    cache = cache_of(model, data.toks)
    parts = [cache["hook_embed"] + cache["hook_pos_embed"]]
    for layer in range(model.cfg.n_layers):
        parts += [cache[act_name("attn_out", layer)], cache[act_name("mlp_out", layer)]]
    return torch.stack(parts)


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_components, None),
        (lambda m, d: reorder(good_components(m, d)), "your [1] is our 'mlp 0'"),
        (token_embeds_only, "token plus positional embeddings"),
        (per_layer_attention, "wrong shape: expected (10, 120, 42, 56), got (7, 120, 42, 56)"),
        (per_layer_attention, "one attention component per layer"),
        (lambda m, d: -good_components(m, d), "wrong sign"),
    ],
)
def test_get_out_by_components(model, fn, phrase):
    result = arena_checks.check_get_out_by_components(fn, model, DATA)
    assert_outcome(result, phrase)


def test_out_by_component_in_unbalanced_dir(model):
    components = good_components(model, DATA)
    direction = good_pre_final_dir(model, DATA)
    right = centred(components[:, :, 0] @ direction, DATA.isbal)
    check = arena_checks.check_out_by_component_in_unbalanced_dir
    assert_passes(check(right, model, DATA))
    assert_fails(check(components[:, :, 0] @ direction, model, DATA), "you did not centre")
    all_mean = components[:, :, 0] @ direction
    all_mean = all_mean - all_mean.mean(1, keepdim=True)
    assert_fails(check(all_mean, model, DATA), "mean over all strings")
    at_1 = centred(components[:, :, 1] @ direction, DATA.isbal)
    assert_fails(check(at_1, model, DATA), "match the components' output at position 1")
    post = centred(components[:, :, 0] @ good_post_dir(model), DATA.isbal)
    assert_fails(check(post, model, DATA), "post-LN direction")


# ---------------------------------------------------------------- ground truth


def totals_only(parens):
    return parens.count("(") == parens.count(")")


def never_negative(parens):
    depth = 0
    for c in parens:
        depth += 1 if c == "(" else -1
        if depth < 0:
            return False
    return True


def test_is_balanced_forloop():
    assert_passes(arena_checks.check_is_balanced_forloop(is_balanced_by_removal))
    assert_fails(arena_checks.check_is_balanced_forloop(totals_only), "only compared the totals")
    result = arena_checks.check_is_balanced_forloop(never_negative)
    assert_fails(result, "the totals must also be equal")
    assert result.message.startswith("is_balanced_forloop('(()')")


def vectorized(tokens):
    steps = (tokens == 3).int() - (tokens == 4).int()
    depth = steps.cumsum(0)
    return bool(depth[-1] == 0) and bool((depth >= 0).all())


def test_is_balanced_vectorized():
    assert_passes(arena_checks.check_is_balanced_vectorized(vectorized))
    result = arena_checks.check_is_balanced_vectorized(
        lambda t: bool((t == 3).sum() == (t == 4).sum())
    )
    assert_fails(result, "only compared the totals")


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (failures_by_loop, None),
        (failures_left_to_right, "you read left to right"),
        (lambda t: failures_by_loop(t)[::-1], "return (total_elevation_failure, negative_failure)"),
        (lambda t: failures_by_loop(t)[0], "expected a tuple of 2 tensors"),
    ],
)
def test_is_balanced_vectorized_return_both(fn, phrase):
    result = arena_checks.check_is_balanced_vectorized_return_both(fn, DATA)
    assert_outcome(result, phrase)


def test_total_elevation_and_negative_failures():
    check = arena_checks.check_total_elevation_and_negative_failures
    assert_passes(check(DATA, *failures_by_loop(DATA.toks)))
    result = check(DATA, *failures_left_to_right(DATA.toks))
    assert_fails(result, "right to left")
    assert result.max_abs_error == 1.0


# ---------------------------------------------------------------- heads


def scores_not_probs(model, data, layer, head):
    return cache_of(model, data.toks)[act_name("attn_scores", layer)][:, head]


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_attn_probs, None),
        (scores_not_probs, "you returned attention scores"),
        (lambda m, d, lay, h: good_attn_probs(m, d, lay, h).transpose(1, 2), "transpose"),
        (lambda m, d, lay, h: good_attn_probs(m, d, h, lay), "head 1.0's pattern"),
    ],
)
def test_get_attn_probs(model, fn, phrase):
    result = arena_checks.check_get_attn_probs(fn, model, DATA)
    assert_outcome(result, phrase)


@pytest.mark.parametrize(
    ("fn", "phrase", "shapes"),
    [
        (good_wov, None, None),
        (lambda m, lay, h: good_wov(m, lay, h).T, "transpose of W_V @ W_O", None),
        (lambda m, lay, h: m.W_O[lay, h] @ m.W_V[lay, h], "wrong order", ((56, 56), (28, 28))),
        (lambda m, lay, h: m.W_Q[lay, h] @ m.W_K[lay, h].T, "the QK matrix", None),
        (lambda m, lay, h: good_wov(m, h, lay), "head 1.0's OV matrix", None),
    ],
)
def test_get_WOV(model, fn, phrase, shapes):
    result = arena_checks.check_get_WOV(fn, model)
    assert_outcome(result, phrase)
    assert result.shape_mismatch == shapes


def pre_20_from(model, data, *, ln1_pos=1, head=0, transpose_ov=False, pull_back=True):
    fit, _ = good_ln_fit(model, data, model.blocks[2].ln1, ln1_pos)
    ov = good_wov(model, 2, head)
    ov = ov.T if transpose_ov else ov
    out = ov @ good_pre_final_dir(model, data)
    return torch.from_numpy(fit.coef_).float().T @ out if pull_back else out


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_pre_20_dir, None),
        (lambda m, d: pre_20_from(m, d, ln1_pos=None), "ln1 pools every position"),
        (lambda m, d: pre_20_from(m, d, ln1_pos=0), "ln1 is at position 0"),
        (lambda m, d: pre_20_from(m, d, pull_back=False), "did not pull back"),
        (lambda m, d: pre_20_from(m, d, transpose_ov=True), "you used W_OV.T"),
        (lambda m, d: pre_20_from(m, d, head=1), "head 2.1's OV matrix"),
        (lambda m, d: -good_pre_20_dir(m, d), "wrong sign"),
    ],
)
def test_get_pre_20_dir(model, fn, phrase):
    result = arena_checks.check_get_pre_20_dir(fn, model, DATA)
    assert_outcome(result, phrase)


def test_out_by_component_in_pre_20_unbalanced_dir(model):
    components = good_components(model, DATA)
    direction = good_pre_20_dir(model, DATA)
    check = arena_checks.check_out_by_component_in_pre_20_unbalanced_dir
    assert_passes(check(centred(components[:7, :, 1] @ direction, DATA.isbal), model, DATA))
    every = check(centred(components[:, :, 1] @ direction, DATA.isbal), model, DATA)
    assert_fails(every, "you kept every component")
    assert every.shape_mismatch == ((7, 120), (10, 120))
    assert_fails(check(components[:7, :, 1] @ direction, model, DATA), "you did not centre")
    at_0 = centred(components[:7, :, 0] @ direction, DATA.isbal)
    assert_fails(check(at_0, model, DATA), "your values match position 0")


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_q_and_k, None),
        (lambda m, t, p, lay: good_q_and_k(m, t, p, lay)[::-1], "return (q, k) in that order"),
        (
            lambda m, t, p, lay: tuple(x[None] for x in good_q_and_k(m, t, p, lay)),
            "drop the batch dimension",
        ),
        (lambda m, t, p, lay: good_q_and_k(m, t, p, 2 - lay), "layer 2's"),
    ],
)
def test_get_q_and_k_for_given_input(model, fn, phrase):
    result = arena_checks.check_get_q_and_k_for_given_input(fn, model, TOKENIZER)
    assert_outcome(result, phrase)


# ---------------------------------------------------------------- neurons and the tally


def pre_activation_neurons(model, data, layer, seq=None):
    pre = cache_of(model, data.toks)[act_name("pre", layer)]
    out = einops.einsum(pre, model.W_out[layer], "b s n, n d -> b s n d")
    return out if seq is None else out[:, seq]


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_out_by_neuron, None),
        (pre_activation_neurons, "pre-activations"),
        (
            lambda m, d, lay, seq=None: good_out_by_neuron(m, d, lay, seq).transpose(-1, -2),
            "transpose",
        ),
        (
            lambda m, d, lay, seq=None: good_out_by_neuron(m, d, lay, None if seq is None else 0),
            "matches position 0; index position seq=1",
        ),
        (lambda m, d, lay, seq=None: good_out_by_neuron(m, d, lay), "you returned every position"),
    ],
)
def test_get_out_by_neuron(model, fn, phrase):
    result = arena_checks.check_get_out_by_neuron(fn, model, SMALL)
    assert_outcome(result, phrase)


def neurons_projected(model, data, layer, *, position=1, direction=None):
    post = cache_of(model, data.toks)[act_name("post", layer)][:, position]
    d = good_pre_20_dir(model, data) if direction is None else direction
    return post * (model.W_out[layer] @ d)


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_neuron_in_20_dir, None),
        (lambda m, d, lay: neurons_projected(m, d, lay, position=0), "match position 0"),
        (
            lambda m, d, lay: neurons_projected(m, d, lay, direction=good_pre_final_dir(m, d)),
            "pre-final-LN direction",
        ),
        (lambda m, d, lay: -good_neuron_in_20_dir(m, d, lay), "wrong sign"),
    ],
)
def test_get_out_by_neuron_in_20_dir(model, fn, phrase):
    result = arena_checks.check_get_out_by_neuron_in_20_dir(fn, model, DATA)
    assert_outcome(result, phrase)


def test_get_out_by_neuron_in_20_dir_less_memory(model):
    check = arena_checks.check_get_out_by_neuron_in_20_dir_less_memory
    assert_passes(check(good_neuron_in_20_dir, model, DATA))
    result = check(lambda m, d, lay: neurons_projected(m, d, lay, position=2), model, DATA)
    assert_fails(result, "match position 2")


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (lambda m, t, c: m.W_E[t.t_to_i[c]], None),
        (lambda m, t, c: m.W_E[7 - t.t_to_i[c]], "the embedding of ')'"),
        (lambda m, t, c: m.W_E[t.t_to_i[c]] + m.W_pos[1], "values differ"),
    ],
)
def test_embedding(model, fn, phrase):
    result = arena_checks.check_embedding(fn, model, TOKENIZER)
    assert_outcome(result, phrase)


def cos_columns(model, v, layer):
    return torch.cosine_similarity(model.W_in[layer].T, v[None], dim=1)


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (cos_columns, None),
        (
            lambda m, v, lay: torch.cosine_similarity(m.W_in[lay], v[None], dim=1),
            "the rows of W_in",
        ),
        (lambda m, v, lay: v @ m.W_in[lay], "dot products"),
        (lambda m, v, lay: cos_columns(m, v, lay) ** 2, "squared cosines"),
    ],
)
def test_cos_sim_with_MLP_weights(model, fn, phrase):
    v = torch.randn(56, generator=torch.Generator().manual_seed(3))
    result = arena_checks.check_cos_sim_with_MLP_weights(fn, model, v)
    assert_outcome(result, phrase)


def unnormalised_samples(v, n_samples=1000):
    samples = torch.randn(n_samples, v.shape[0])
    return ((samples @ (v / v.norm())) ** 2).mean().item()


@pytest.mark.parametrize(
    ("fn", "phrase"),
    [
        (good_avg_squared_cos_sim, None),
        (
            lambda v, n_samples=1000: (
                torch.cosine_similarity(torch.randn(n_samples, len(v)), v[None], dim=1)
                .mean()
                .item()
            ),
            "not its square",
        ),
        (unnormalised_samples, "did not normalise the random vectors"),
        (
            lambda v, n_samples=1000: (
                torch.cosine_similarity(torch.randn(n_samples, len(v)), v[None], dim=1) ** 2
            ),
            "one value per sample",
        ),
    ],
)
def test_avg_squared_cos_sim(fn, phrase):
    result = arena_checks.check_avg_squared_cos_sim(fn)
    assert_outcome(result, phrase)


def test_a_failure_names_the_part_outside_its_tolerance():
    # the first part's error is the larger one but within its bound (relative to its
    # large values); the second's is small but past its bound: the message names it
    from bracketlens.arena._compare import Case, Tolerance, run_cases

    expected = (torch.tensor([1000.0, 2.0]), torch.tensor([0.5]))
    answer = (torch.tensor([1000.5, 2.0]), torch.tensor([0.51]))
    case = Case("f()", lambda: answer, expected, Tolerance(atol=1e-5, rtol=1e-3), parts=("a", "b"))
    result = run_cases("f", [case])
    assert not result.passed
    assert "values differ in b" in result.message and "at index (0,)" in result.message
    nan = (torch.tensor([1000.0, 2.0]), torch.tensor([float("nan")]))
    result = run_cases("f", [dataclasses.replace(case, call=lambda: nan)])
    assert "your result in b contains NaN" in result.message
