"""Causal models, pair sampling, the interchange setters and explain's result shape."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bracketlens import BracketTransformer, evaluation_set
from bracketlens.algorithms import (
    KINDS,
    MODELS,
    CausalModel,
    PairCounts,
    Search,
    Variable,
    explain,
    register,
)
from bracketlens.algorithms.align import Adam, _run, screen
from bracketlens.algorithms.choice import same_patch, screen_locations
from bracketlens.algorithms.locations import Site, pair_activations, sites
from bracketlens.algorithms.pairs import sample_pairs, string_splits
from bracketlens.algorithms.words import verdict
from bracketlens.data.tokens import OPEN
from bracketlens.errors import BracketLensError
from bracketlens.interventions import (
    OrthogonalBasis,
    Start,
    patch,
    patch_rows,
    random_basis,
    run_patched,
)
from bracketlens.model.names import act_name

SMALL = Search(
    counts=PairCounts(train=24, validation=16, test=32),
    screen_per_cell=8,
    das_top=1,
    das_dims=(1,),
    das_steps=5,
    confirm_test=48,
    refine_steps=5,  # the refits run, briefly
)


@pytest.fixture(scope="module")
def data():
    return evaluation_set(2000, seed=3)


@pytest.mark.parametrize("name", list(MODELS))
def test_rule_of_each_model_is_the_ground_truth(name, data) -> None:
    model = MODELS[name]
    labels = model.rule(model.values(data.tokens.numpy()))
    np.testing.assert_array_equal(labels, data.labels.numpy())


def test_counterfactual_takes_one_variable_from_the_source() -> None:
    m = MODELS["elevation_and_negative"]
    from bracketlens.data import tokenize

    base = m.values(tokenize(["(())"]).numpy())
    source = m.values(tokenize(["((()"]).numpy())
    assert m.counterfactual(base, source, "elevation").tolist() == [False]
    assert m.counterfactual(source, base, "elevation").tolist() == [False]  # still negative
    with pytest.raises(BracketLensError, match="no variable"):
        m.counterfactual(base, source, "depth")


def test_register_refuses_a_taken_name() -> None:
    model = MODELS["elevation_and_negative"]
    with pytest.raises(BracketLensError, match="exists"):
        register(model)
    with pytest.raises(BracketLensError, match="verdict"):
        register(CausalModel("none", model.variables, model.rule))


def test_pairs_match_length_kinds_and_splits(data) -> None:
    model = MODELS["elevation_and_negative"]
    tokens = data.tokens.numpy()
    values = model.values(tokens)
    split_of = string_splits(len(data), np.random.default_rng(0))
    counts = PairCounts(train=20, validation=10, test=20)
    pairs = sample_pairs(model, model.variables[0], values, tokens, data.failure_groups.numpy(),
                         split_of, counts, np.random.default_rng(1))  # fmt: skip
    lengths = (tokens >= OPEN).sum(-1)
    np.testing.assert_array_equal(lengths[pairs.base], lengths[pairs.source])
    np.testing.assert_array_equal(tokens[pairs.base, 1], tokens[pairs.source, 1])
    np.testing.assert_array_equal(split_of[pairs.base], pairs.split)
    assert not values["negative"][pairs.base].any()  # informative bases never go negative
    for group in np.unique(pairs.group):
        for split in range(3):
            kinds = np.bincount(
                pairs.kind[(pairs.group == group) & (pairs.split == split)], minlength=3
            )
            present = kinds[kinds > 0]
            assert len(present) == 2 and (present == present[0]).all()  # equal numbers per kind
    expected = np.where(pairs.kind == KINDS.index("unchanged"), pairs.base_label, ~pairs.base_label)
    np.testing.assert_array_equal(pairs.label, expected)


def test_patch_rows_with_one_position_matches_patch(random_model, data) -> None:
    tokens = data.tokens[:16]
    _, cache = random_model.run_with_cache(tokens.flip(0), names_filter="blocks.1.attn.hook_z")
    source = cache["blocks.1.attn.hook_z"]
    basis = torch.linalg.qr(torch.randn(28, 3))[0]
    mask = torch.zeros(16, tokens.shape[1], dtype=torch.bool)
    mask[:, 2] = True
    for head in (0, 1):
        want = random_model.run_with_hooks(
            tokens,
            fwd_hooks=[
                ("blocks.1.attn.hook_z", patch(source, head=head, positions=2, basis=basis))
            ],
        )[:, 0]
        got = random_model.run_with_hooks(
            tokens,
            fwd_hooks=[("blocks.1.attn.hook_z", patch_rows(source, mask, head=head, basis=basis))],
        )[:, 0]
        torch.testing.assert_close(got, want)


def test_a_run_from_a_layer_matches_the_full_pass(random_model, data) -> None:
    tokens = data.tokens[:32]
    _, cache = random_model.run_with_cache(tokens, names_filter=lambda n: "resid_pre" in n)
    full = random_model(tokens)[:, 0]
    for layer in range(3):
        start = Start(layer, cache[act_name("resid_pre", layer)])
        got = run_patched(random_model, tokens, start=start)
        torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


def _pairs(data, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of strings of the same length (as explain's pairs are)."""
    lengths = (data.tokens >= OPEN).sum(-1).numpy()
    rng = np.random.default_rng(0)
    base = rng.choice(len(data), n, replace=False)
    source = np.array([rng.choice(np.flatnonzero(lengths == lengths[b])) for b in base])
    return base, source


def test_patched_runs_start_after_the_patch_and_match_hooked_runs(random_model, data) -> None:
    """Every kind of site, the last block's included, with and without a basis: the run
    that starts after the patch gives the logits of the whole run with the hook."""
    acts, mask = _every_site(random_model, data)
    mask[:, 0] = True
    mask[::2, 2] = True
    mask[1::3, 1:4] = True
    rows = np.arange(len(mask))
    with torch.no_grad():
        for site in sites(random_model.cfg):
            d = site.width(random_model.cfg)
            for basis in (None, random_basis(d, 2, torch.Generator().manual_seed(site.layer))):
                want = _hooked(random_model, acts, site, mask, basis)
                got = _run(random_model, acts, site, rows, mask, basis)
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4,
                                           msg=lambda m, s=site: f"{s.label}: {m}")  # fmt: skip


def _every_site(model, data):
    """Pairs' activations at every site, and an all-False patch mask ``[pairs, width]``."""
    base, source = _pairs(data)
    acts = pair_activations(model, data.tokens, base, source, sites(model.cfg))
    return acts, torch.zeros(len(base), acts.base_tokens.shape[1], dtype=torch.bool)


def test_pair_activations_are_each_pairs_own_runs(random_model, data) -> None:
    """Strings that are the base or the source of several pairs run once: every pair
    still gets its own base's and source's activations, tokens and logits."""
    base, source = _pairs(data, 12)
    base, source = (
        np.concatenate([base, base[:5], source[:3]]),
        np.concatenate([source, source[:5][::-1], base[:3]]),
    )  # repeated strings, a string as base of one pair and source of another
    every = sites(random_model.cfg)
    acts = pair_activations(random_model, data.tokens, base, source, every)
    width = acts.base_tokens.shape[1]
    base_tokens = data.tokens[torch.as_tensor(base), :width]
    np.testing.assert_array_equal(acts.base_tokens.numpy(), base_tokens.numpy())
    with torch.no_grad():
        _, base_cache = random_model.run_with_cache(base_tokens)
        _, source_cache = random_model.run_with_cache(data.tokens[torch.as_tensor(source), :width])
        logits = random_model.class_logits(base_tokens)
    for hook, value in acts.base.items():
        torch.testing.assert_close(value, base_cache[hook], atol=1e-5, rtol=0, msg=hook)
    for hook, value in acts.source.items():
        torch.testing.assert_close(value, source_cache[hook], atol=1e-5, rtol=0, msg=hook)
    torch.testing.assert_close(acts.base_logits, logits, atol=1e-4, rtol=0)


def _hooked(model, acts, site, mask, basis):
    """Class logits of the whole base run with a ``patch_rows`` hook at ``site``."""
    hook = patch_rows(acts.source[site.hook], mask, head=site.head, basis=basis)
    return model.run_with_hooks(acts.base_tokens, fwd_hooks=[(site.hook, hook)])[:, 0]


def test_patched_runs_give_the_hooked_runs_gradients(random_model, data) -> None:
    """What a rotation fit differentiates: the gradient with respect to the basis, through
    a run that recomputes only the patched positions until an attention reads them, is
    the gradient through the whole hooked run (in float64: the attention of this model is
    sharp enough that float32 rounding moves some gradients by 1e-4 of the largest)."""
    model = copy.deepcopy(random_model).double()
    acts, mask = _every_site(model, data)
    mask[:, 1] = True
    mask[::2, 3] = True
    rows = np.arange(len(mask))
    for site in sites(model.cfg):
        d = site.width(model.cfg)
        grads = []
        for run in ("ours", "hooked"):
            basis = random_basis(d, 2, torch.Generator().manual_seed(7)).double().requires_grad_()
            if run == "ours":
                logits = _run(model, acts, site, rows, mask, basis)
            else:
                logits = _hooked(model, acts, site, mask, basis)
            (logits[:, 1] - logits[:, 0]).pow(2).sum().backward()
            grads.append(basis.grad)
        torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=1e-9,
                                   msg=lambda m, s=site: f"{s.label}: {m}")  # fmt: skip


def test_a_run_reads_from_the_base_only_what_the_patch_leaves_alone() -> None:
    n = 3
    assert Site("blocks.0.hook_resid_pre", None, 0).base_reads(n) == (
        "blocks.0.hook_resid_pre", *(f"blocks.0.attn.hook_{c}" for c in "qkv"),
    )  # fmt: skip
    assert Site("blocks.1.attn.hook_z", 0, 1).base_reads(n) == (
        "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
        *(f"blocks.2.attn.hook_{c}" for c in "qkv"),
    )  # fmt: skip
    # past the last attention, a run computes position 0 alone and reads nothing more
    assert Site("blocks.2.hook_resid_mid", None, 2).base_reads(n) == ("blocks.2.hook_resid_mid",)
    assert Site("blocks.2.mlp.hook_post", None, 2).base_reads(n) == ("blocks.2.hook_resid_post",)


def test_a_patched_run_starts_after_its_site_or_says_it_cannot() -> None:
    assert Site("blocks.1.attn.hook_z", 0, 1).start() == ("blocks.1.hook_resid_mid", 1, True)
    assert Site("blocks.2.mlp.hook_post", None, 2).start() == ("blocks.2.hook_resid_post", 3, False)
    with pytest.raises(BracketLensError, match="no patched run starts after"):
        Site("blocks.0.attn.hook_result", 0, 0).start()


def test_screen_skips_only_rows_a_patch_cannot_change(random_model, data) -> None:
    """Rows screen does not run (a source equal to the base there, padding, or past the
    last attention but position 0) are the ones whose hooked run keeps the base's class."""
    base, source = _pairs(data)
    every = sites(random_model.cfg)
    acts = pair_activations(random_model, data.tokens, base, source, every)
    width = acts.base_tokens.shape[1]
    sets = [(p,) for p in range(min(width, 8))] + [tuple(range(width)), (0, 1)]
    with torch.no_grad():
        for site in every:
            got = screen(random_model, acts, site, sets)
            for j, positions in enumerate(sets):
                hook = patch(acts.source[site.hook], head=site.head, positions=list(positions))
                logits = random_model.run_with_hooks(
                    acts.base_tokens, fwd_hooks=[(site.hook, hook)]
                )
                want = (logits[:, 0, 1] > logits[:, 0, 0]).numpy()
                np.testing.assert_array_equal(got[j], want, err_msg=f"{site.label} @ {positions}")


def test_orthogonal_basis_has_orthonormal_columns() -> None:
    basis = OrthogonalBasis(56, 4, seed=0)()
    torch.testing.assert_close(basis.T @ basis, torch.eye(4), atol=1e-5, rtol=0)


def test_orthogonal_basis_fit_depends_on_its_seed_alone() -> None:
    """The parametrisation's hidden base comes from the seed, not torch's global generator:
    the same seed gives the same gradient steps whatever ran before."""
    grads = []
    for before in (1, 7):
        torch.randn(before)  # move the global generator differently
        rotation = OrthogonalBasis(56, 2, seed=5)
        (rotation()[:, 0] @ torch.arange(56.0)).square().backward()
        grads.append(next(rotation.parameters()).grad)
    assert torch.equal(grads[0], grads[1])


def test_adam_is_torchs_adam_step_for_step() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y, w0 = (torch.randn(*s, generator=gen) for s in ((50, 20), (50, 3), (20, 3)))
    finals = []
    for make in (torch.optim.Adam, Adam):
        w = w0.clone().requires_grad_(True)
        optimiser = make([w], lr=0.05)
        for _ in range(40):
            optimiser.zero_grad()
            (x @ w - y).square().mean().backward()
            optimiser.step()
        finals.append(w.detach())
    assert torch.equal(finals[0], finals[1])


def test_screen_map_is_each_site_screened_on_its_own(data) -> None:
    """Sites whose patches are the same run (``resid_post L`` and ``resid_pre L+1``) are
    screened once; every other site, each head of a hook included, on its own."""
    model = BracketTransformer()
    model.init_weights(seed=1)
    causal = MODELS["elevation_and_negative"]
    tokens = data.tokens.numpy()
    pairs = sample_pairs(causal, causal.variables[0], causal.values(tokens), tokens,
                         data.failure_groups.numpy(), string_splits(len(data), np.random.default_rng(0)),
                         PairCounts(train=4, validation=8, test=4), np.random.default_rng(1))  # fmt: skip
    val = pairs.in_split("validation")
    search = replace(
        SMALL, sites=lambda s: s.layer < 2, positions=lambda p: len(p) == 1 and p[0] < 4
    )
    found = screen_locations(model, data, causal.name, causal.variables[0], val, search)
    assert found.sites == ("resid_pre 0", "z 0.0", "z 0.1", "resid_mid 0", "mlp_post 0",
                           "resid_post 0", "resid_pre 1", "z 1.0", "z 1.1", "resid_mid 1",
                           "mlp_post 1", "resid_post 1")  # fmt: skip
    sites = found.site_objects
    acts = pair_activations(model, data.tokens, val.base, val.source, sites)
    for i, site in enumerate(sites):
        direct = screen(model, acts, site, list(found.positions)) == val.label[None]
        for k in range(len(KINDS)):
            rows = val.kind == k
            if rows.any():
                want = direct[:, rows].mean(axis=1)
                np.testing.assert_allclose(found.iia[i, :, k], want, atol=0.13, err_msg=site.label)
    z00, z01 = found.sites.index("z 0.0"), found.sites.index("z 0.1")
    assert not np.array_equal(found.iia[z00], found.iia[z01])  # two heads, two screens
    post, pre = found.sites.index("resid_post 0"), found.sites.index("resid_pre 1")
    np.testing.assert_array_equal(found.iia[post], found.iia[pre])
    last = Site("blocks.2.hook_resid_post", None, 2)
    assert same_patch(last, 3) == last  # the last block's output is no block's input


def test_random_model_explains_nothing_and_json_has_the_keys(random_model, data) -> None:
    """Every generated model too (screened at the last layer's hooks, to stay quick)."""
    search = replace(SMALL, sites=lambda s: s.layer == 2 and s.head is None)
    result = explain(random_model, data, seed=0, search=search)
    assert result.best_model == "none" and result.passing == ()
    out = result.to_json()
    assert {"best_model", "models", "variables", "split", "passing", "combined", "closest",
            "budget"} <= set(out)  # fmt: skip
    assert out["budget"]["restricted"] is True
    assert any(m["generated"] for m in out["models"]) and len(out["models"]) > 10
    closest = out["closest"]
    assert closest["model"] in {m["name"] for m in out["models"]} and closest["failing"]
    assert {"variable", "guard", "value", "threshold", "kinds", "groups"} <= set(
        closest["failing"][0]
    )
    # the sentence gives each failing guard's value and the bound it was judged by
    first = closest["failing"][0]
    sentence = verdict(result)
    assert sentence.startswith("No causal model passes its guards.")
    if first["bound"] is not None:
        assert f"{first['guard']} {first['value']:.3f} (95% bound {first['bound']:.4f})" in sentence
    for m in out["models"]:
        assert {"name", "iia", "iia_ci", "coverage", "passes", "generated", "rule",
                "telling_iia", "margin"} <= set(m)  # fmt: skip
        assert m["passes"] is False
        assert set(m["coverage"]) == {"both failures", "just neg failure",
                                      "just total elevation failure", "balanced"}  # fmt: skip
    keys = {"name", "hook", "head", "positions", "position", "dim", "iia", "iia_ci",
            "iia_by_kind", "control_iia", "null_flip_rate", "telling_iia", "trivial",
            "decision_carrying", "label_iia_here", "untested"}  # fmt: skip
    assert out["variables"]
    for v in out["variables"]:
        assert keys <= set(v)
        assert set(v["iia_by_kind"]) == set(KINDS)
        assert v["position"] == v["positions"][0]
        assert v["head"] is None or isinstance(v["head"], int)
    import json

    json.dumps(out)  # JSON-ready


def test_a_user_model_runs_through_explain(data) -> None:
    model = BracketTransformer()
    model.init_weights(seed=0)
    only_elevation = CausalModel(
        "zero_elevation",
        (Variable("elevation", MODELS["elevation_and_negative"].variables[0].compute),),
        lambda v: v["elevation"] == 0,
    )
    last_layer = Search(**{**SMALL.__dict__, "sites": lambda site: site.layer == 2})
    result = explain(model, data, models=[only_elevation], search=last_layer)
    assert [m.name for m in result.models] == ["zero_elevation"]
    with pytest.raises(BracketLensError, match="unknown causal model"):
        explain(model, data, models=["nope"], search=SMALL)


def test_iia_heatmaps_draw_one_panel_per_kind_with_pairs() -> None:
    from bracketlens.algorithms import ScreenMap
    from bracketlens.plots.algorithms import iia_heatmaps

    iia = np.random.default_rng(0).random((3, 5, 3))
    iia[:, :, 1] = np.nan  # no to-balanced pairs
    iia[0, 4] = np.nan  # a location that was not screened
    screen = ScreenMap("m", "v", ("resid_pre 0", "z 0.0", "resid_mid 0"), (0, 0, 0),
                       ((0,), (1,), (2,), (0, 1, 2), (0, 1)), iia)  # fmt: skip
    fig = iia_heatmaps(screen)
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == [0, 1, 2]  # single positions only
    assert fig.data[0].z[0][0] == pytest.approx(iia[0, 0, 0])


def test_searches_are_named_and_an_unknown_name_says_which_exist():
    assert Search.named("default") == Search()
    assert Search.named("smoke").counts.total < Search.named("quick").counts.total
    thorough = Search.named("thorough")
    assert thorough.confirm_test == 4 * Search().confirm_test
    assert replace(thorough, confirm_test=Search().confirm_test) == Search()  # nothing else
    with pytest.raises(BracketLensError, match="default, thorough, quick, smoke"):
        Search.named("careful")


def test_a_searchs_settings_are_its_numbers_as_json_and_a_restricted_one_has_none():
    quick = Search.quick().settings()
    assert json.loads(json.dumps(quick)) == quick
    assert quick["das_steps"] == Search.quick().das_steps and quick["das_dims"] == [1]
    assert quick["counts"]["train"] == Search.quick().counts.train
    assert quick != Search.smoke().settings()
    with pytest.raises(BracketLensError, match="no settings"):
        replace(Search.quick(), positions=lambda p: len(p) == 1).settings()


def test_a_variable_equal_to_the_input_token_where_it_aligns_is_trivial(data) -> None:
    from bracketlens.algorithms.confirm import trivial
    from bracketlens.algorithms.locations import Location

    tokens = data.tokens.numpy()
    first_close = MODELS["elevation_negative_shortcuts"].values(tokens)["starts_with_close"]
    embedding = Site("blocks.0.hook_resid_pre", None, 0)
    assert trivial(Location(embedding, (1,)), first_close, tokens)
    assert not trivial(Location(embedding, (2,)), first_close, tokens)  # another token
    later = Site("blocks.1.hook_resid_pre", None, 1)
    assert not trivial(Location(later, (1,)), first_close, tokens)  # not the input any more
