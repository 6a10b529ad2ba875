import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from bracketlens import BracketLensError, evaluation_set
from bracketlens.attribution import (
    centre_on_balanced,
    component_labels,
    components_in_direction,
    fit_layernorm,
    out_by_components,
    unbalanced_attribution,
    unbalanced_direction_post_ln,
    unbalanced_direction_pre_ln,
)

DATA = evaluation_set(300, seed=5)


def test_labels(random_model):
    assert component_labels(random_model.cfg) == [
        "embeds", "head 0.0", "head 0.1", "mlp 0", "head 1.0", "head 1.1", "mlp 1",
        "head 2.0", "head 2.1", "mlp 2",
    ]  # fmt: skip


def test_components_sum_to_the_final_ln_input(random_model):
    stack = out_by_components(random_model, DATA.tokens, batch_size=128)
    assert stack.values.shape == (10, 300, DATA.tokens.shape[1], 56)
    _, cache = random_model.run_with_cache(DATA.tokens)
    torch.testing.assert_close(stack.total(), cache["blocks.2.hook_resid_post"], atol=1e-4, rtol=0)
    # independent: a head's output is z @ W_O for that head
    z = cache["blocks.1.attn.hook_z"][:, :, 0]
    torch.testing.assert_close(stack["head 1.0"], z @ random_model.W_O[1, 0], atol=1e-5, rtol=0)


def test_projection_without_the_4d_tensor_equals_projecting_it(random_model):
    direction = torch.randn(56)
    full = out_by_components(random_model, DATA.tokens)
    for position in (0, 3):
        proj = components_in_direction(random_model, DATA.tokens, direction, position, 64)
        want = torch.einsum("cbd,d->cb", full.values[:, :, position], direction)
        torch.testing.assert_close(proj.values, want, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(proj.bias, full.bias @ direction)


def test_layernorm_fit_matches_sklearn_on_cached_activations(random_model):
    fit = fit_layernorm(random_model, DATA.tokens, "blocks.1.ln2", position=2)
    _, cache = random_model.run_with_cache(DATA.tokens)
    x = cache["blocks.1.hook_resid_mid"][:, 2].numpy()
    y = cache["blocks.1.ln2.hook_normalized"][:, 2].numpy()
    want = LinearRegression().fit(x, y)
    np.testing.assert_allclose(fit.regression.coef_, want.coef_, rtol=1e-4, atol=1e-5)
    assert fit.r2 == pytest.approx(want.score(x, y), abs=1e-6)
    pooled = fit_layernorm(random_model, DATA.tokens, "blocks.0.ln1", position=None)
    assert pooled.position is None and 0 < pooled.r2 <= 1
    with pytest.raises(BracketLensError, match="outside"):
        fit_layernorm(random_model, DATA.tokens, "ln_final", position=99)


def test_directions(random_model):
    post = unbalanced_direction_post_ln(random_model)
    torch.testing.assert_close(post, random_model.W_U[:, 0] - random_model.W_U[:, 1])
    fit = fit_layernorm(random_model, DATA.tokens, "ln_final", 0)
    pre = unbalanced_direction_pre_ln(random_model, DATA.tokens, fit)
    torch.testing.assert_close(pre, torch.from_numpy(fit.regression.coef_).float().T @ post)


def test_centring(random_model):
    values = torch.tensor([[1.0, 3.0, 10.0], [2.0, 2.0, 0.0]])
    balanced = torch.tensor([True, True, False])
    torch.testing.assert_close(
        centre_on_balanced(values, balanced), torch.tensor([[-1.0, 1.0, 8.0], [0.0, 0.0, -2.0]])
    )
    with pytest.raises(BracketLensError, match="at least one balanced"):
        centre_on_balanced(values, torch.zeros(3, dtype=torch.bool))
    att = unbalanced_attribution(random_model, DATA.tokens, DATA.labels, torch.randn(56))
    torch.testing.assert_close(
        att.values[:, DATA.labels].mean(1), torch.zeros(10), atol=1e-4, rtol=0
    )
