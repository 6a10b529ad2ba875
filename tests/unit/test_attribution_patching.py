"""Attribution patching (verify.attribution_patching): a first-order ablation estimate."""

import pytest
import torch

from bracketlens import BracketLensError, evaluation_set
from bracketlens.interventions.ablate import component_hook_name
from bracketlens.interventions.attribution_patching import attribution_patching

DATA = evaluation_set(60, seed=2)


@pytest.fixture(scope="module")
def patched(random_model):
    return attribution_patching(random_model, DATA, batch_size=25)


def _margin_moved_towards_mean(model, component, position, eps):
    """Per-string correct-class margin with the output moved eps of the way to its mean."""
    name, head = component_hook_name(model, component)
    cache = {}
    model.run_with_hooks(DATA.tokens, fwd_hooks=[(name, lambda a, hook: cache.update(a=a))])
    mean = cache["a"].mean(0)

    def move(act, hook):
        act = act.clone()
        if head is None:
            act[:, position] += eps * (mean[position] - act[:, position])
        else:
            act[:, position, head] += eps * (mean[position, head] - act[:, position, head])
        return act

    logits = model.run_with_hooks(DATA.tokens, fwd_hooks=[(name, move)])[:, 0].double()
    sign = DATA.labels.double() * 2 - 1
    return sign * (logits[:, 1] - logits[:, 0])


@pytest.mark.parametrize(
    ("component", "position"), [("mlp 1", 1), ("head 2.0", 0), ("head 0.1", 3)]
)
def test_estimate_is_the_derivative_of_the_ablation(random_model, patched, component, position):
    eps = 2e-3
    with torch.no_grad():  # a central difference: its error is second order in eps
        ahead = _margin_moved_towards_mean(random_model, component, position, eps)
        behind = _margin_moved_towards_mean(random_model, component, position, -eps)
    finite_difference = -(ahead - behind) / (2 * eps)  # the drop, per unit of the move
    estimate = patched.effects[:, patched.components.index(component), position].double()
    scale = finite_difference.abs().max()
    assert scale > 1e-4  # the pair does something on this model
    assert (estimate - finite_difference).abs().max() < 0.05 * scale


def test_top_pairs_are_sorted_and_grouped(patched):
    assert patched.effects.shape == (60, 9, DATA.tokens.shape[1])
    top = patched.top("all", k=4)
    assert [t.effect for t in top] == sorted((t.effect for t in top), reverse=True)
    best = top[0]
    mean = patched.mean("all")
    assert best.effect == pytest.approx(float(mean.max()))
    assert mean[patched.components.index(best.component), best.position] == pytest.approx(
        best.effect
    )
    assert patched.mean("balanced").shape == mean.shape
    with pytest.raises(BracketLensError, match="unknown failure group"):
        patched.mean("nope")


def test_weights_get_no_gradient(random_model):
    attribution_patching(random_model, DATA[:5])
    assert all(p.grad is None for p in random_model.parameters())
