import pytest
import torch

from bracketlens import BracketDataset, BracketLensError, evaluation_set, tokenize
from bracketlens.attribution.neurons import (
    classify_neurons,
    out_by_neuron,
    out_by_neuron_in_direction,
    rank_neurons,
)
from bracketlens.circuits import (
    attention_patterns,
    head_input_direction,
    mean_attention_row,
    mean_squared_cosine_random,
    mlp_input_cosines,
    ov_matrix,
    patched_attention,
    qk_matrix,
    queries_and_keys,
    tally_vectors,
    token_embedding,
)

DATA = evaluation_set(200, seed=9)


def test_attention_rows_sum_to_one_over_real_keys(random_model):
    pattern = attention_patterns(random_model, DATA.tokens, 1, 1, batch_size=64)
    assert pattern.shape == (200, DATA.tokens.shape[1], DATA.tokens.shape[1])
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:2]))
    pad_keys = (DATA.tokens == 1)[:, None, :].expand_as(pattern)
    assert pattern[pad_keys].max() < 1e-30
    _, cache = random_model.run_with_cache(DATA.tokens)
    torch.testing.assert_close(pattern, cache["blocks.1.attn.hook_pattern"][:, 1])


def test_mean_attention_row():
    patterns = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]])
    torch.testing.assert_close(mean_attention_row(patterns, 0), torch.tensor([0.4, 0.6]))
    only_first = torch.tensor([True, False])
    torch.testing.assert_close(
        mean_attention_row(patterns, 0, only_first), torch.tensor([0.2, 0.8])
    )
    with pytest.raises(BracketLensError, match="no strings"):
        mean_attention_row(patterns, 0, torch.tensor([False, False]))


def test_ov_and_qk(random_model):
    ov = ov_matrix(random_model, 2, 1)
    torch.testing.assert_close(ov, random_model.W_V[2, 1] @ random_model.W_O[2, 1])
    torch.testing.assert_close(qk_matrix(random_model, 0, 1).AB, random_model.QK[0, 1].AB)


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [(3, 0, "unknown layer 3"), (0, 2, "unknown head 2"), (-1, 0, "unknown layer")],
)
def test_unknown_layer_or_head(random_model, layer, head, message):
    with pytest.raises(BracketLensError, match=message):
        ov_matrix(random_model, layer, head)


def test_head_input_direction_predicts_the_heads_write(random_model):
    """Moving the residual at the source along the direction moves the head's output along the target."""
    target = torch.randn(56)
    direction = head_input_direction(random_model, DATA.tokens, 2, 0, 1, target)
    ov = ov_matrix(random_model, 2, 0)
    from bracketlens.attribution import fit_layernorm

    fit = fit_layernorm(random_model, DATA.tokens, "blocks.2.ln1", position=1)
    x = torch.randn(56)
    # linear part of (LN-fit then OV) dotted with target equals x . direction
    want = (fit.coef @ x) @ ov @ target
    torch.testing.assert_close(x @ direction, want, rtol=1e-4, atol=1e-4)


def test_neuron_outputs_sum_to_the_mlp_output(random_model):
    tokens = DATA.tokens[:50]
    by_neuron = out_by_neuron(random_model, tokens, 1)
    _, cache = random_model.run_with_cache(tokens)
    total = by_neuron.sum(-2) + random_model.blocks[1].mlp.b_out
    torch.testing.assert_close(total, cache["blocks.1.hook_mlp_out"], atol=1e-5, rtol=1e-5)
    at_two = out_by_neuron(random_model, tokens, 1, position=2)
    torch.testing.assert_close(at_two, by_neuron[:, 2])


def test_low_memory_neuron_projection_equals_the_full_one(random_model):
    direction = torch.randn(56)
    full = out_by_neuron(random_model, DATA.tokens, 0, position=1) @ direction
    low = out_by_neuron_in_direction(random_model, DATA.tokens, 0, direction, 1, batch_size=32)
    # the random model's activations are ~100x the course model's: float32 needs rtol too
    torch.testing.assert_close(low, full, atol=1e-5, rtol=1e-5)


def test_rank_neurons_orders_by_separation():
    contributions = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, 1.0, 0.1], [5.0, 1.0, -3.0], [5.0, 1.0, -3.1]]
    )
    balanced = torch.tensor([True, True, False, False])
    ranks = rank_neurons(contributions, balanced, layer=1)
    assert [r.name for r in ranks] == ["1.0", "1.2", "1.1"]
    assert ranks[0].separation == pytest.approx(5.0)


def test_classify_neurons_on_synthetic_shapes():
    p = torch.linspace(0, 1, 21).repeat(10)
    columns = [
        torch.clamp(p - 0.5, min=0) * 4,  # p > 1/2
        torch.clamp(0.5 - p, min=0) * -3,  # p < 1/2
        (p - 0.5).abs() * 2,  # |p - 1/2|
        (p - 0.5) * 2,  # monotonic
        torch.zeros_like(p) + 1e-6 * p,  # inactive
    ]
    kinds = [c.kind for c in classify_neurons(torch.stack(columns, 1), p, layer=0)]
    assert kinds == ["p > 1/2", "p < 1/2", "p != 1/2", "monotonic", "inactive"]


def test_tally_vectors_and_cosines(random_model):
    tally = tally_vectors(random_model, DATA.tokens, head=1)
    cos = torch.cosine_similarity(tally.v_left, tally.v_right, dim=0).item()
    assert tally.cosine == pytest.approx(cos)
    torch.testing.assert_close(token_embedding(random_model, "("), random_model.W_E[3])
    with pytest.raises(BracketLensError, match="'\\(' and '\\)'"):
        token_embedding(random_model, "x")
    cosines = mlp_input_cosines(random_model, random_model.W_in[1][:, 4], 1)
    assert cosines[4].item() == pytest.approx(1.0, abs=1e-5)
    assert cosines.abs().max() <= 1 + 1e-5
    assert mean_squared_cosine_random(torch.randn(56), n_samples=4000) == pytest.approx(
        1 / 56, abs=0.003
    )


def test_queries_keys_and_patched_attention(random_model):
    q, k = queries_and_keys(random_model, tokenize("(())"), 0)
    assert q.shape == (6, 2, 28) and k.shape == (6, 2, 28)
    plain = patched_attention(random_model, 0, 0, run_on="(())")
    _, cache = random_model.run_with_cache(tokenize("(())"))
    torch.testing.assert_close(plain.pattern, cache["blocks.0.attn.hook_pattern"][0])
    patched = patched_attention(random_model, 0, 0, run_on="(())", keys_from=["))))"])
    assert not torch.allclose(patched.pattern[0], plain.pattern[0])
    torch.testing.assert_close(patched.pattern[1], plain.pattern[1])  # other head untouched
    assert "keys of head 0.0" in patched.description


def test_dataset_without_balanced_strings_is_refused(random_model):
    from bracketlens.circuits import analyse_elevation

    with pytest.raises(BracketLensError):
        analyse_elevation(random_model, BracketDataset(["((", "))"]))
