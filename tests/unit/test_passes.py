"""The single-pass engine gives the numbers of the step-by-step public functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from bracketlens.activations import get_activations
from bracketlens.attribution import components_in_direction, fit_layernorm
from bracketlens.attribution.directions import unbalanced_direction_pre_ln
from bracketlens.attribution.layernorm import score_fit
from bracketlens.attribution.neurons import out_by_neuron_in_direction
from bracketlens.circuits.heads import attention_patterns, head_input_direction, ov_matrix
from bracketlens.data.generate import evaluation_set
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import evaluate
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes import FitMoments, gather

REL = 1e-3  # LN fits amplify float32 noise: compare fit-derived numbers relatively


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def data():
    return evaluation_set(1200, seed=5)


@pytest.fixture(scope="module")
def model(random_model: BracketTransformer) -> BracketTransformer:
    return random_model


@pytest.fixture(scope="module")
def gathered(model, data):
    return gather(model, data, layer=2, head=1, position=3, groups=data.split_groups(seed=0))


def test_moments_fit_matches_sklearn_on_random_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 6] + 7.0
    y = x @ rng.normal(size=(6, 4)) + rng.normal(size=(500, 4)) * 0.3 + 2.0
    moments = FitMoments(6, 4)
    for part in np.array_split(np.arange(500), 7):  # in batches, as the engine adds rows
        moments.add(torch.from_numpy(x[part]), torch.from_numpy(y[part]))
    fit = moments.fit(layernorm="test", position=0)
    ref = LinearRegression().fit(x, y)
    assert rel_err(fit.regression.coef_, ref.coef_) < 1e-9
    assert rel_err(fit.regression.intercept_, ref.intercept_) < 1e-9
    assert fit.r2 == pytest.approx(ref.score(x, y), abs=1e-12)
    # scoring other rows from their moments alone equals sklearn's score
    x2 = rng.normal(size=(300, 6)) * 3
    y2 = x2 @ rng.normal(size=(6, 4))
    other = FitMoments(6, 4)
    other.add(torch.from_numpy(x2), torch.from_numpy(y2))
    assert other.score(fit) == pytest.approx(ref.score(x2, y2), abs=1e-9)


def test_moments_merge_and_weights_equal_the_rows_themselves():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)) + 5, rng.normal(size=(40, 2)) - 3
    a, b, both = FitMoments(3, 2), FitMoments(3, 2), FitMoments(3, 2)
    a.add(torch.from_numpy(x[:25]), torch.from_numpy(y[:25]))
    b.add(torch.from_numpy(x[25:] * 10), torch.from_numpy(y[25:]))  # far from a's shift
    both.add(torch.from_numpy(np.concatenate([x[:25], x[25:] * 10])), torch.from_numpy(y))
    merged = a.merged(b).fit(layernorm="t", position=0)
    direct = both.fit(layernorm="t", position=0)
    assert rel_err(merged.regression.coef_, direct.regression.coef_) < 1e-9
    weighted, repeated = FitMoments(3, 2), FitMoments(3, 2)
    weighted.add(torch.from_numpy(x[:5]), torch.from_numpy(y[:5]), torch.tensor([1, 2, 3, 1, 4]))
    rows = np.repeat(np.arange(5), [1, 2, 3, 1, 4])
    repeated.add(torch.from_numpy(x[rows]), torch.from_numpy(y[rows]))
    assert weighted.n == repeated.n == 11
    w_fit, r_fit = (m.fit(layernorm="t", position=0) for m in (weighted, repeated))
    assert rel_err(w_fit.regression.coef_, r_fit.regression.coef_) < 1e-9
    assert w_fit.r2 == pytest.approx(r_fit.r2, abs=1e-12)


def test_moments_refuse_a_fit_without_rows():
    with pytest.raises(BracketLensError, match="at least two rows"):
        FitMoments(3, 3).fit(layernorm="t", position=0)


def test_final_fit_and_held_out_score_match_the_step_functions(model, data, gathered):
    half_a, half_b = data.split(seed=0)
    ref = fit_layernorm(model, half_a.tokens, "ln_final", position=0)
    fit = gathered.final_fit([0])
    assert rel_err(fit.coef, ref.coef) < REL
    assert fit.r2 == pytest.approx(ref.r2, abs=1e-4)
    assert gathered.final_ln[1].score(fit) == pytest.approx(
        score_fit(model, ref, half_b.tokens), abs=1e-4
    )
    everything = fit_layernorm(model, data.tokens, "ln_final", position=0)
    assert rel_err(gathered.final_fit().coef, everything.coef) < REL


def test_projections_match_the_step_functions(model, data, gathered):
    direction = unbalanced_direction_pre_ln(model, data.tokens)
    ref_0 = components_in_direction(model, data.tokens, direction, position=0)
    ours_0 = gathered.components_at_0(model, data.tokens, direction)
    assert ours_0.labels == ref_0.labels
    assert rel_err(ours_0.values, ref_0.values) < 1e-4
    assert float(ours_0.bias) == pytest.approx(float(ref_0.bias), rel=1e-5)
    ref_read = components_in_direction(model, data.tokens, direction, position=3)
    ours_read = gathered.components_at_read(model, data.tokens, direction)
    keep = len(ours_read.labels)
    assert ours_read.labels == ref_read.labels[:keep] and keep == 7
    assert rel_err(ours_read.values, ref_read.values[:keep]) < 1e-4
    for layer in (0, 1):
        ref = out_by_neuron_in_direction(model, data.tokens, layer, direction, position=3)
        assert rel_err(gathered.neuron_contributions(model, layer, direction), ref) < 1e-4
    with pytest.raises(BracketLensError, match=r"MLPs 0\.\.1"):
        gathered.neuron_contributions(model, 2, direction)


def test_attention_evaluation_and_tally_match(model, data, gathered):
    rows = attention_patterns(model, data.tokens, 2, 1)[:, 0]
    assert (gathered.attention_from_0 - rows).abs().max() < 1e-5
    assert torch.allclose(gathered.attention_from_0.sum(-1), torch.ones(len(data)), atol=1e-5)
    ours, ref = gathered.evaluation(data), evaluate(model, data)
    assert (ours.p_balanced - ref.p_balanced).abs().max() < 1e-5


def test_pooled_layer0_fit_rebuilds_the_trimmed_padding(model, data, gathered):
    """Same r^2 and fitted values as sklearn on every position, padding included.

    Layer 0's input spans fewer than d_model dimensions, so coefficients are not
    unique there (sklearn fits float32 rounding with huge ones); fitted values are.
    """
    acts = get_activations(model, data.tokens, ["blocks.0.hook_resid_pre"])
    x = acts["blocks.0.hook_resid_pre"].flatten(0, 1).numpy()
    ref = fit_layernorm(model, data.tokens, "blocks.0.ln1", position=None)
    ours = gathered.pooled_ln0_fit()
    assert gathered.pooled_ln0.n == x.shape[0]  # every (string, position), trimmed or not
    assert ours.r2 == pytest.approx(ref.r2, abs=1e-5)
    assert rel_err(ours.regression.predict(x), ref.regression.predict(x)) < REL


def test_read_fit_gives_the_head_input_direction(model, data, gathered):
    post = gathered.final_fit().pull_back(model.W_U[:, 0] - model.W_U[:, 1])
    ref = head_input_direction(model, data.tokens, 2, 1, 3, post)
    ours = gathered.read_fit().pull_back(ov_matrix(model, 2, 1) @ post)
    assert rel_err(ours, ref) < REL


def test_gather_rejects_bad_roles_and_groups(model, data):
    with pytest.raises(BracketLensError, match="head"):
        gather(model, data, layer=2, head=7, position=1)
    with pytest.raises(BracketLensError, match="position"):
        gather(model, data, layer=2, head=0, position=99)
    with pytest.raises(BracketLensError, match="groups"):
        gather(model, data, layer=2, head=0, position=1, groups=torch.zeros(3))
    gathered = gather(model, data[:50], layer=1, head=0, position=1)
    with pytest.raises(BracketLensError, match="no group 1"):
        gathered.final_fit([1])


def test_float16_slices_keep_the_projections(model, data, gathered):
    half = gather(
        model, data, layer=2, head=1, position=3, groups=data.split_groups(seed=0),
        keep_dtype=torch.float16,
    )  # fmt: skip
    assert half.z_0.dtype == torch.float16 and gathered.z_0.dtype == torch.float32
    direction = gathered.final_fit().pull_back(model.W_U[:, 0] - model.W_U[:, 1])
    full = gathered.components_at_0(model, data.tokens, direction).values
    assert rel_err(half.components_at_0(model, data.tokens, direction).values, full) < 1e-3
    read = gathered.components_at_read(model, data.tokens, direction).values
    assert rel_err(half.components_at_read(model, data.tokens, direction).values, read) < 1e-3
    # the fits never see the kept slices
    assert np.array_equal(half.final_fit().regression.coef_, gathered.final_fit().regression.coef_)


@pytest.mark.parametrize("layer", [1, 2])
def test_the_read_pass_stops_at_the_read_layer_unless_it_gathers_feeders(random_model, layer):
    """Without feeders the pass ends at the read layer's input; what it keeps is what
    the full-depth pass (with the feeders of head 2.1) keeps."""
    from bracketlens.passes import read_slices

    data = evaluation_set(150, seed=6)
    short = read_slices(random_model, data, layer=layer, position=2)
    full = read_slices(random_model, data, layer=layer, position=2, feeders_of=(2, 1))
    torch.testing.assert_close(short.z_read, full.z_read)
    torch.testing.assert_close(short.post_read, full.post_read)
    for a, b in zip(short.read_ln, full.read_ln, strict=True):
        fits = [m.fit(layernorm="blocks.1.ln1", position=2) for m in (a, b)]
        assert fits[0].r2 == pytest.approx(fits[1].r2, abs=1e-9)


def test_a_pass_can_stop_at_a_block_input(random_model):
    tokens = evaluation_set(20, seed=1).tokens
    _, cache = random_model.run_with_cache(tokens)
    seen = {}
    with torch.no_grad():
        got = random_model.run_with_hooks(
            tokens,
            stop_at_layer=2,
            fwd_hooks=[("blocks.2.hook_resid_pre", lambda x, hook: seen.setdefault("x", x))],
        )
    torch.testing.assert_close(got, cache["blocks.2.hook_resid_pre"])
    assert seen["x"] is got
