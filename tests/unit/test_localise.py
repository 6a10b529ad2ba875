import pytest
import torch

from bracketlens import BracketLensError, evaluation_set
from bracketlens.components import Component
from bracketlens.interventions.ablate import (
    ablate,
    component_hook_name,
    component_names,
    mean_activation,
)
from bracketlens.pipeline import localise

DATA = evaluation_set(200, seed=2)


def test_component_names(random_model):
    names = component_names(random_model)
    assert names[:3] == ["head 0.0", "head 0.1", "mlp 0"] and len(names) == 9
    assert component_hook_name(random_model, "head 2.1") == ("blocks.2.attn.hook_result", 1)
    assert component_hook_name(random_model, "mlp 1") == ("blocks.1.hook_mlp_out", None)
    for bad in ["head 3.0", "head 0.2", "mlp x", "embed", "head 1"]:
        with pytest.raises(BracketLensError):
            component_hook_name(random_model, bad)


def test_mean_ablation_replaces_the_output_by_its_mean(random_model):
    mean = mean_activation(random_model, DATA.tokens, "mlp 2")
    effect = ablate(random_model, DATA, "mlp 2", "mean")
    # independent: the last MLP writes into the final LN input directly
    _, cache = random_model.run_with_cache(DATA.tokens)
    resid = cache["blocks.2.hook_resid_post"] - cache["blocks.2.hook_mlp_out"] + mean
    ln = random_model.ln_final
    x = resid - resid.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * ln.w + ln.b
    logits = x[:, 0] @ random_model.W_U + random_model.b_U
    torch.testing.assert_close(effect.p_balanced, logits.softmax(-1)[:, 1], atol=1e-5, rtol=1e-4)


def test_ablation_at_unused_positions_changes_nothing(random_model):
    # the last layer's MLP at a position other than 0 never reaches the logits at 0
    plain = ablate(random_model, DATA, "mlp 2", "mean", positions=[5])
    from bracketlens import predict_proba

    torch.testing.assert_close(plain.p_balanced, predict_proba(random_model, DATA.tokens))


def test_resample_is_seeded_and_groups_add_up(random_model):
    a = ablate(random_model, DATA, "head 1.0", "resample", seed=3)
    b = ablate(random_model, DATA, "head 1.0", "resample", seed=3)
    torch.testing.assert_close(a.p_balanced, b.p_balanced)
    assert sum(g["n"] for g in a.by_group.values()) == len(DATA)
    with pytest.raises(BracketLensError, match="unknown ablation method"):
        ablate(random_model, DATA, "head 1.0", "zero")


def test_localise_names_roles_of_any_model(random_model):
    found = localise(random_model, DATA)
    heads = {Component.at(layer, h) for layer in range(3) for h in range(2)}
    assert found.elevation_head.location in heads
    assert found.negative_head.location in heads
    assert found.elevation_head.location != found.negative_head.location
    assert found.elevation_head.text == found.elevation_head.component().short
    assert 0 <= found.elevation_head.confidence <= 1
    assert found.read_position.position() >= 1
    assert found.read_position.text == str(found.read_position.position())
    with pytest.raises(BracketLensError, match="balanced and unbalanced"):
        localise(random_model, DATA[DATA.labels])


def test_no_neurons_before_an_elevation_head_in_layer_0(random_model):
    from bracketlens.circuits import Roles
    from bracketlens.localisation import locate_neurons
    from bracketlens.passes import read_slices

    direction = torch.randn(56)
    rows = torch.ones(len(DATA), dtype=torch.bool)
    at_0 = read_slices(random_model, DATA, layer=0, position=1)
    assert locate_neurons(random_model, at_0, DATA, rows, Roles(0, 1, 1, 0), direction) == ([], {})
    at_2 = read_slices(random_model, DATA, layer=2, position=1)
    names, _ = locate_neurons(random_model, at_2, DATA, rows, Roles(2, 0, 1, 0), direction)
    assert names and all(n.split(".")[0] in ("0", "1") for n in names)


@pytest.mark.parametrize("subset", [False, True])
def test_mean_ablations_from_one_clean_pass_match_each_ablation_run_whole(random_model, subset):
    """Each run of the table starts after its component, from the clean pass; the
    numbers are those of ablating the component in a whole run, means over all of DATA."""
    from bracketlens.interventions.ablate import mean_ablations

    rows = DATA.starts_open if subset else None
    table = mean_ablations(random_model, DATA, rows)
    chosen = DATA[rows] if subset else DATA
    assert [e.component for e in table] == component_names(random_model)
    for effect in table:
        whole = ablate(random_model, chosen, effect.component, "mean", reference=DATA)
        torch.testing.assert_close(effect.p_balanced, whole.p_balanced, atol=1e-5, rtol=1e-4)
        assert effect.loss == pytest.approx(whole.loss, rel=1e-4, abs=1e-6)
