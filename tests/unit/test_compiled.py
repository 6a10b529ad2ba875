"""The hand-built model: its construction holds exactly, and it classifies every string."""

import pytest
import torch

from bracketlens import BracketTransformer, evaluation_set, load_model, tokenize
from bracketlens.compiled import ROLES, build_compiled, compiled_state_dict
from bracketlens.compiled.basis import residual_layout
from bracketlens.compiled.check import all_strings, score_exhaustive, score_tokens
from bracketlens.compiled.layer0 import MIN_TALLY
from bracketlens.data.truth import failure_types
from bracketlens.model.checkpoint import load_state

MIN_MARGIN = 10.0  # logits; measured 19.0 on every string up to length 18


@pytest.fixture(scope="module")
def compiled() -> BracketTransformer:
    return build_compiled()


def test_directions_are_orthonormal_and_orthogonal_to_all_ones():
    layout = residual_layout()
    feats = torch.stack(list(layout.features.values()))
    torch.testing.assert_close(feats @ feats.T, torch.eye(len(feats), dtype=torch.float64))
    torch.testing.assert_close(
        feats.sum(1), torch.zeros(len(feats), dtype=torch.float64), atol=1e-12, rtol=0
    )
    pos = layout.positions
    assert (pos @ feats.T).abs().max() < 1e-12  # positions never touch a feature
    norms = pos.norm(dim=1)
    torch.testing.assert_close(norms, norms[:1].expand(42), atol=1e-12, rtol=0)
    assert layout.unused >= 0


def test_loads_like_the_course_checkpoint(compiled):
    state = compiled_state_dict(compiled.cfg)
    assert set(state) == set(BracketTransformer().state_dict())
    fresh = BracketTransformer()
    load_state(fresh, state, source="test")  # strict keys and shapes
    assert not compiled.training and not any(p.requires_grad for p in compiled.parameters())
    assert torch.equal(load_model("compiled").W_U, compiled.W_U)


def test_layer0_layernorm_is_an_exact_constant_scaling(compiled):
    tokens = evaluation_set(500, seed=3).tokens
    _, cache = compiled.run_with_cache(tokens, names_filter="blocks.0.ln1.hook_scale")
    scale = cache["blocks.0.ln1.hook_scale"]
    torch.testing.assert_close(scale, torch.full_like(scale, float(scale[0, 0])))


def test_tally_is_the_suffix_mean_at_every_position(compiled):
    data = evaluation_set(300, seed=4)
    tokens = data.tokens
    _, cache = compiled.run_with_cache(tokens, names_filter="blocks.0.hook_attn_out")
    tally = cache["blocks.0.hook_attn_out"].double() @ residual_layout()["tally"]
    step = (tokens == 3).double() - (tokens == 4).double()
    suffix = step.flip(-1).cumsum(-1).flip(-1)  # S(i)
    keys = (tokens != 1).double().flip(-1).cumsum(-1).flip(-1)  # non-pad keys i..end
    live = (tokens != 1) & (torch.arange(tokens.shape[1]) > 0)
    expected = suffix / keys.clamp(min=1)
    torch.testing.assert_close(tally[live], expected[live], atol=1e-4, rtol=0)
    torch.testing.assert_close(tally[:, 0], torch.zeros(len(tokens), dtype=torch.float64))
    assert expected[live][expected[live] != 0].abs().min() >= MIN_TALLY - 1e-12


def test_all_strings_enumerates_each_string_once():
    tokens = all_strings(5)
    assert tokens.shape == (32, 7)
    assert len({tuple(t) for t in tokens.tolist()}) == 32
    assert all_strings(0).tolist() == [[0, 2]]


def test_every_string_up_to_length_12(compiled):
    score = score_exhaustive(compiled, 12)
    assert score.n == 2**13 - 1
    assert score.wrong == []
    assert score.min_margin > MIN_MARGIN


def test_ten_thousand_fresh_strings(compiled):
    data = evaluation_set(10_000, seed=20_260_115)
    score = score_tokens(compiled, data.tokens)
    assert score.accuracy == 1.0 and score.min_margin > MIN_MARGIN


def test_features_fire_where_the_story_says(compiled):
    """MLP 0 writes 1 exactly where a suffix goes positive / is not level, else 0."""
    tokens = tokenize(["())(", "(())", "((", "))"])
    layout = residual_layout()
    _, cache = compiled.run_with_cache(tokens, names_filter="blocks.0.hook_mlp_out")
    out = cache["blocks.0.hook_mlp_out"].double()
    positive = out @ layout["goes_positive"]
    step = (tokens == 3).long() - (tokens == 4).long()
    suffix = step.flip(-1).cumsum(-1).flip(-1)
    live = (tokens != 1) & (torch.arange(tokens.shape[1]) > 0)  # [start] reads only itself
    torch.testing.assert_close(positive[live], (suffix > 0).double()[live], atol=1e-4, rtol=0)
    nonzero = out[:, 1] @ layout["nonzero"]
    expected = failure_types(tokens).total_elevation.double()
    torch.testing.assert_close(nonzero, expected, atol=1e-4, rtol=0)


def test_roles_record_matches_the_weights(compiled):
    assert ROLES["elevation_head"] == "2.0" and ROLES["negative_head"] == "2.1"
    for layer, kind in ((1, "attn"), (1, "mlp"), (2, "mlp")):
        block = getattr(compiled.blocks[layer], kind)
        assert all(p.abs().max() == 0 for n, p in block.named_parameters() if "W_" in n)


@pytest.mark.slow(minutes=1)
@pytest.mark.parametrize("length", range(16, 12, -1))  # longest first, for pytest-xdist
def test_every_string_of_each_length_13_to_16(compiled, length):
    """One length per test, so that pytest-xdist's workers share the 122,880 strings
    (``python benchmarks/compiled.py`` goes on to length 18)."""
    score = score_tokens(compiled, all_strings(length))
    assert score.wrong == [], length
    assert score.min_margin > MIN_MARGIN
