"""The course-compatible names (bracketlens.arena): same numbers as the general API."""

import inspect

import pytest
import torch
from sklearn.linear_model import LinearRegression
from transformer_lens import ActivationCache

import bracketlens
from bracketlens import BracketLensError, BracketTransformer, arena, evaluation_set, failure_types
from bracketlens.arena import BracketsDataset, SimpleTokenizer
from bracketlens.attribution import (
    fit_layernorm,
    out_by_components,
    unbalanced_direction_pre_ln,
)
from bracketlens.attribution.neurons import out_by_neuron
from bracketlens.circuits import head_input_direction, mlp_input_cosines

_SOURCE = evaluation_set(120, seed=3)
PAIRS = list(zip(_SOURCE.strings, _SOURCE.labels.tolist(), strict=True))
DATA = BracketsDataset(PAIRS)
TOKENIZER = SimpleTokenizer("()")


def test_exports_are_documented_wrappers():
    for name in arena.__all__:
        obj = getattr(arena, name)
        assert obj.__doc__, name
        if inspect.isfunction(obj) and name not in (
            "add_perma_hooks_to_mask_pad_tokens",
            "load_model",
        ):
            assert obj.__doc__.splitlines()[0].startswith("Wraps"), name
    assert arena.load_model is bracketlens.load_model


def test_get_activations_one_name_gives_a_tensor(random_model):
    got = arena.get_activations(random_model, DATA.toks, "blocks.1.attn.hook_pattern")
    _, cache = random_model.run_with_cache(DATA.toks)
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, cache["blocks.1.attn.hook_pattern"])


def test_get_activations_a_list_gives_a_cache(random_model):
    names = ["hook_embed", "blocks.0.hook_resid_post"]
    got = arena.get_activations(random_model, DATA.toks, names)
    assert isinstance(got, ActivationCache)
    assert sorted(got.keys()) == sorted(names)
    _, cache = random_model.run_with_cache(DATA.toks)
    torch.testing.assert_close(got["blocks.0.hook_resid_post"], cache["blocks.0.hook_resid_post"])


@pytest.mark.parametrize(
    ("module", "name"), [("ln_final", "ln_final"), ("blocks.2.ln1", "blocks.2.ln1")]
)
def test_get_ln_fit_takes_the_module(random_model, module, name):
    regression, r2 = arena.get_ln_fit(random_model, DATA, random_model.get_submodule(module), 1)
    fit = fit_layernorm(random_model, DATA.toks, name, 1)
    assert isinstance(regression, LinearRegression)
    assert isinstance(r2, float)
    assert r2 == pytest.approx(fit.r2, abs=1e-6)
    # the course's sklearn fit on float32 rows against the library's float64 moments
    torch.testing.assert_close(
        torch.from_numpy(regression.coef_).double(),
        torch.from_numpy(fit.regression.coef_),
        rtol=1e-3,
        atol=1e-4,
    )


def test_get_ln_fit_refuses_what_is_not_a_layernorm_of_the_model(random_model):
    with pytest.raises(BracketLensError, match="unknown LayerNorm"):
        arena.get_ln_fit(random_model, DATA, random_model.blocks[0].attn)
    with pytest.raises(BracketLensError, match="not a module of the model"):
        arena.get_ln_fit(random_model, DATA, BracketTransformer().ln_final)


def test_directions_are_the_library_directions(random_model):
    w_u = random_model.W_U
    torch.testing.assert_close(arena.get_post_final_ln_dir(random_model), w_u[:, 0] - w_u[:, 1])
    pre = arena.get_pre_final_ln_dir(random_model, DATA)
    torch.testing.assert_close(pre, unbalanced_direction_pre_ln(random_model, DATA.toks))
    expected = head_input_direction(random_model, DATA.toks, 2, 0, 1, pre)
    torch.testing.assert_close(arena.get_pre_20_dir(random_model, DATA), expected)


def test_get_out_by_components_is_the_bare_tensor(random_model):
    got = arena.get_out_by_components(random_model, DATA)
    assert got.shape == (10, len(DATA), DATA.seq_length, 56)
    torch.testing.assert_close(got, out_by_components(random_model, DATA.toks).values)


def test_balance_checkers():
    examples = {"()()": True, "(())": True, "))((": False, "(()": False, ")(": False, "": True}
    for s, balanced in examples.items():
        assert arena.is_balanced_forloop(s) is balanced
        assert arena.is_balanced_vectorized(TOKENIZER.tokenize(s, max_len=6)[0]) is balanced
    with pytest.raises(ValueError, match="only '\\(' and '\\)'"):
        arena.is_balanced_forloop("(a)")
    with pytest.raises(BracketLensError, match="one string's tokens"):
        arena.is_balanced_vectorized(TOKENIZER.tokenize(["()", "(("]))


def test_failure_types_read_right_to_left():
    toks = TOKENIZER.tokenize(["(()", "())", "()", ")("])
    elevation, negative = arena.is_balanced_vectorized_return_both(toks)
    assert elevation.tolist() == [True, True, False, False]
    # "(()" read from the right: ")" then "(" then "(": the suffix "(()" has more "("
    assert negative.tolist() == [True, False, False, True]
    assert torch.equal(negative, failure_types(toks).negative)


def test_head_functions(random_model):
    probs = arena.get_attn_probs(random_model, DATA, 2, 0)
    assert probs.shape == (len(DATA), DATA.seq_length, DATA.seq_length)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
    w_ov = arena.get_WOV(random_model, 1, 1)
    torch.testing.assert_close(w_ov, random_model.W_V[1, 1] @ random_model.W_O[1, 1])
    q, k = arena.get_q_and_k_for_given_input(random_model, TOKENIZER, "(())", 0)
    assert q.shape == k.shape == (6, 2, 28)


def test_neuron_functions(random_model):
    full = arena.get_out_by_neuron(random_model, DATA, 1)
    assert full.shape == (len(DATA), DATA.seq_length, 56, 56)
    at_1 = arena.get_out_by_neuron(random_model, DATA, 1, seq=1)
    torch.testing.assert_close(at_1, out_by_neuron(random_model, DATA.toks, 1, position=1))
    in_dir = arena.get_out_by_neuron_in_20_dir(random_model, DATA, 1)
    low = arena.get_out_by_neuron_in_20_dir_less_memory(random_model, DATA, 1)
    assert low.shape == (len(DATA), 56)
    torch.testing.assert_close(low, in_dir, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_dir, at_1 @ arena.get_pre_20_dir(random_model, DATA))


def test_tally_functions(random_model):
    e = arena.embedding(random_model, TOKENIZER, "(")
    torch.testing.assert_close(e, random_model.W_E[3])
    cos = arena.cos_sim_with_MLP_weights(random_model, e, 0)
    torch.testing.assert_close(cos, mlp_input_cosines(random_model, e, 0))
    avg = arena.avg_squared_cos_sim(e, n_samples=2000)
    assert isinstance(avg, float)
    assert avg == pytest.approx(1 / 56, abs=0.005)


def test_simple_tokenizer_follows_the_course():
    assert TOKENIZER.tokenize("()(())").tolist() == [[0, 3, 4, 3, 3, 4, 4, 2]]
    assert TOKENIZER.tokenize(["()", "(())"]).tolist() == [[0, 3, 4, 2, 1, 1], [0, 3, 3, 4, 4, 2]]
    assert TOKENIZER.tokenize(["()"], max_len=4).shape == (1, 6)
    assert TOKENIZER.tokenize([""]).tolist() == [[0, 2, 1]]  # padded to one paren, as the course
    assert TOKENIZER.decode(torch.tensor([[0, 3, 4, 2, 1, 1]])) == ["()"]
    assert TOKENIZER.t_to_i == {"[start]": 0, "[pad]": 1, "[end]": 2, "(": 3, ")": 4}
    assert TOKENIZER.i_to_t[3] == "("
    assert (TOKENIZER.START_TOKEN, TOKENIZER.PAD_TOKEN, TOKENIZER.END_TOKEN) == (0, 1, 2)
    with pytest.raises(BracketLensError, match="alphabet"):
        SimpleTokenizer("[]")
    with pytest.raises(BracketLensError, match="only '\\(' and '\\)'"):
        TOKENIZER.tokenize("(x)")


def test_brackets_dataset_follows_the_course():
    data = BracketsDataset([("(())", True), (")(", False), ["()", True]])
    assert data.strs == ["(())", ")(", "()"]
    assert data.isbal.tolist() == [True, False, True]
    assert data.toks.shape == (3, 6)
    assert data.seq_length == 6
    assert data.starts_open.tolist() == [True, False, True]
    torch.testing.assert_close(data.open_proportion, torch.tensor([0.5, 0.5, 0.5]))
    assert len(data) == 3
    head = data[:1]
    assert isinstance(head, BracketsDataset)
    assert head.strs == ["(())"]
    s, isbal, toks = data[2]
    assert (s, bool(isbal), toks.tolist()[:4]) == ("()", True, [0, 3, 4, 2])
    assert data.to("cpu") is data
    # labels taken from a data set's isbal (0-d tensors) are accepted
    assert BracketsDataset(list(zip(data.strs, data.isbal, strict=True))).isbal.tolist() == [
        True,
        False,
        True,
    ]


def test_brackets_dataset_filters_and_validates():
    pairs = [("()", True), ("(())", True), (")(", False), ("))((", False)]
    assert BracketsDataset.with_length(pairs, 4).strs == ["(())", "))(("]
    assert BracketsDataset.with_start_char(pairs, ")").strs == [")(", "))(("]
    assert BracketsDataset.with_length(pairs, 4).seq_length == 6
    with pytest.raises(BracketLensError, match="is labelled True but is not balanced"):
        BracketsDataset([(")(", True)])


def test_perma_hooks_are_added_once_and_change_nothing(random_model):
    model = BracketTransformer()
    model.load_state_dict(random_model.state_dict())
    model.eval().requires_grad_(False)
    toks = DATA.toks[:20]
    before = model(toks)
    assert arena.add_perma_hooks_to_mask_pad_tokens(model, TOKENIZER.PAD_TOKEN) is model
    arena.add_perma_hooks_to_mask_pad_tokens(model, TOKENIZER.PAD_TOKEN)
    assert len(model.hook_dict["hook_tokens"].fwd_hooks) == 1
    assert len(model.hook_dict["blocks.2.attn.hook_attn_scores"].fwd_hooks) == 1
    torch.testing.assert_close(model(toks), before)
    logits, _ = model.run_with_cache(toks)  # permanent hooks survive run_with_cache
    torch.testing.assert_close(logits, before)
    assert len(model.hook_dict["hook_tokens"].fwd_hooks) == 1
    model.reset_hooks(including_permanent=True)
    assert not model.hook_dict["hook_tokens"].fwd_hooks
