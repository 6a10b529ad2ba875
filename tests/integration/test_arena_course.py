"""The course's functions, called the course's way on its checkpoint, give the course's numbers."""

from types import SimpleNamespace

import pytest
import torch

from bracketlens import BracketTransformer, arena
from bracketlens.arena import BracketsDataset, SimpleTokenizer
from bracketlens.arena import checks as arena_checks

N_STRINGS = 2000
TOKENIZER = SimpleTokenizer("()")


@pytest.fixture(scope="module")
def model(course_model):
    """A copy of the course model with the course's pad-masking perma hooks (they change no number)."""
    copy = BracketTransformer(course_model.cfg)
    copy.load_state_dict(course_model.state_dict())
    copy.eval().requires_grad_(False)
    return arena.add_perma_hooks_to_mask_pad_tokens(copy, TOKENIZER.PAD_TOKEN)


@pytest.fixture(scope="module")
def data_tuples(course_data):
    labels = course_data.labels[:N_STRINGS].tolist()
    return list(zip(course_data.strings[:N_STRINGS], labels, strict=True))


@pytest.fixture(scope="module")
def data(data_tuples):
    return BracketsDataset(data_tuples)


@pytest.fixture(scope="module")
def data_mini(data_tuples):
    return BracketsDataset(data_tuples[:100])


def test_published_confidences(model):
    toks = TOKENIZER.tokenize(["()()", "(())", "))(("])
    p_balanced = model(toks)[:, 0].softmax(-1)[:, 1]
    torch.testing.assert_close(
        p_balanced, torch.tensor([0.999986, 0.999989, 0.000005]), atol=2e-6, rtol=0
    )


def test_head_20_attends_to_position_1(model, data):
    attn_probs_20 = arena.get_attn_probs(model, data, 2, 0)
    from_query_0 = attn_probs_20[data.starts_open].mean(0)[0]
    assert 0.4 <= from_query_0[1] <= 0.7
    assert from_query_0[2:].max() < 0.1


def v_l_and_v_r(model, data):
    """The course's solution: embeddings through the pooled ln1 fit of layer 0 and head 0.0's OV."""
    fit, _ = arena.get_ln_fit(model, data, model.blocks[0].ln1, seq_pos=None)
    layernorm_approx = torch.tensor(fit.coef_, dtype=torch.float32)
    w_ov = arena.get_WOV(model, 0, 0)
    v_l = arena.embedding(model, TOKENIZER, "(") @ layernorm_approx.T @ w_ov
    v_r = arena.embedding(model, TOKENIZER, ")") @ layernorm_approx.T @ w_ov
    return v_l, v_r


def test_v_l_and_v_r_point_opposite_ways(model, data):
    v_l, v_r = v_l_and_v_r(model, data)
    assert torch.cosine_similarity(v_l, v_r, dim=0).item() == pytest.approx(-0.9974, abs=0.002)


def test_v_r_lines_up_with_the_mlp_inputs(model, data):
    _, v_r = v_l_and_v_r(model, data)
    mlp0 = arena.cos_sim_with_MLP_weights(model, v_r, 0).pow(2).mean().item()
    mlp1 = arena.cos_sim_with_MLP_weights(model, v_r, 1).pow(2).mean().item()
    assert mlp0 == pytest.approx(0.1239, abs=0.01)
    assert mlp1 == pytest.approx(0.1301, abs=0.01)
    assert arena.avg_squared_cos_sim(v_r) == pytest.approx(1 / 56, abs=0.003)


def test_heads_20_and_21_separate_the_failure_types(model, data):
    pre_final = arena.get_pre_final_ln_dir(model, data)
    components = arena.get_out_by_components(model, data)[:, :, 0] @ pre_final
    centred = components - components[:, data.isbal].mean(1, keepdim=True)
    assert arena_checks.check_out_by_component_in_unbalanced_dir(centred, model, data).passed
    elevation, negative = arena.is_balanced_vectorized_return_both(data.toks)
    # head 2.0 pushes towards "unbalanced" on total elevation failures, head 2.1 on negative ones
    assert centred[7, elevation & ~negative].median() > 1
    assert centred[8, negative & ~elevation].median() > 1


def test_course_notebook_runs_the_course_tests(model, data, data_mini, capsys):
    """Our own course functions pass every course test, each printing one line."""
    calls = [
        (arena_checks.test_get_post_final_ln_dir, (arena.get_post_final_ln_dir, model)),
        (arena_checks.test_get_ln_fit, (arena.get_ln_fit, model, data_mini)),
        (arena_checks.test_get_pre_final_ln_dir, (arena.get_pre_final_ln_dir, model, data_mini)),
        (arena_checks.test_get_out_by_components, (arena.get_out_by_components, model, data_mini)),
        (arena_checks.test_get_attn_probs, (arena.get_attn_probs, model, data_mini)),
        (arena_checks.test_get_WOV, (arena.get_WOV, model)),
        (arena_checks.test_get_pre_20_dir, (arena.get_pre_20_dir, model, data_mini)),
        (arena_checks.test_get_out_by_neuron, (arena.get_out_by_neuron, model, data_mini)),
        (
            arena_checks.test_get_out_by_neuron_in_20_dir,
            (arena.get_out_by_neuron_in_20_dir, model, data_mini),
        ),
        (
            arena_checks.test_get_out_by_neuron_in_20_dir_less_memory,
            (arena.get_out_by_neuron_in_20_dir_less_memory, model, data_mini),
        ),
        (
            arena_checks.test_get_q_and_k_for_given_input,
            (arena.get_q_and_k_for_given_input, model, TOKENIZER),
        ),
        (
            arena_checks.test_is_balanced_vectorized_return_both,
            (arena.is_balanced_vectorized_return_both, data),
        ),
        (arena_checks.test_embedding, (arena.embedding, model, TOKENIZER)),
        (arena_checks.test_avg_squared_cos_sim, (arena.avg_squared_cos_sim,)),
    ]
    for test, args in calls:
        test(*args)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(calls)
    assert all(line.startswith("All tests in `test_") for line in lines)


def float64_fit(model, data, layernorm, seq_pos=None):
    """A learner's get_ln_fit with float64 least squares instead of sklearn."""
    cache = arena.get_activations(model, data.toks, list(_ln_hooks(model, layernorm)))
    x, y = (cache[name].double() for name in _ln_hooks(model, layernorm))
    x, y = (x.flatten(0, 1), y.flatten(0, 1)) if seq_pos is None else (x[:, seq_pos], y[:, seq_pos])
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y, driver="gelsd").solution
    residual, total = ((y - design @ solution) ** 2).sum(0), ((y - y.mean(0)) ** 2).sum(0)
    # a constant output (ln2 of block 2 has one: its weight and bias were subnormal, and
    # loading flushes them to 0) scores 1 when fitted exactly, as sklearn's r2_score does
    exact = torch.where(residual == 0, 1.0, 0.0).double()
    r2 = torch.where(total > 0, 1 - residual / total, exact)
    return SimpleNamespace(coef_=solution[:-1].T.numpy(), intercept_=solution[-1].numpy()), float(
        r2.mean()
    )


def _ln_hooks(model, layernorm):
    name = next(n for n, m in model.named_modules() if m is layernorm)
    if name == "ln_final":
        return "blocks.2.hook_resid_post", "ln_final.hook_normalized"
    _, layer, ln = name.split(".")
    before = "hook_resid_pre" if ln == "ln1" else "hook_resid_mid"
    return f"blocks.{layer}.{before}", f"{name}.hook_normalized"


def test_fit_tolerance_admits_another_solver_on_data_mini(model, data_mini):
    """The course checks on 100 strings; a float64 solver must agree with our float32 sklearn."""
    result = arena_checks.check_get_ln_fit(float64_fit, model, data_mini)
    assert result.passed, result.message


def test_mistakes_are_named_on_the_course_model(model, data):
    def left_to_right(toks):
        depth = ((toks == 3).int() - (toks == 4).int()).cumsum(-1)
        return depth[:, -1] != 0, (depth < 0).any(-1)

    result = arena_checks.check_is_balanced_vectorized_return_both(left_to_right, data)
    assert not result.passed
    assert "read left to right" in result.message
    pre_final = arena.get_pre_final_ln_dir(model, data)
    uncentred = arena.get_out_by_components(model, data)[:, :, 0] @ pre_final
    result = arena_checks.check_out_by_component_in_unbalanced_dir(uncentred, model, data)
    assert "you did not centre" in result.message
    with pytest.raises(AssertionError, match="transpose"):
        arena_checks.test_get_WOV(lambda m, layer, head: arena.get_WOV(m, layer, head).T, model)
