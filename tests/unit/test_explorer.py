"""The explorer's export: what the page receives is the model and the means Python uses."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from bracketlens import BracketLensError, evaluation_set
from bracketlens.circuits.elevation import Roles
from bracketlens.explorer import explore, explorer_export, explorer_page, explorer_section
from bracketlens.explorer.export import decode, encode, mean_outputs
from bracketlens.interventions.ablate import mean_activation


@pytest.fixture(scope="module")
def data():
    return evaluation_set(300, seed=4)


def test_encode_round_trips_float32(random_model):
    w = random_model.blocks[1].attn.W_Q
    back = torch.from_numpy(decode(encode(w)).copy())
    torch.testing.assert_close(back, w, rtol=0, atol=0)


def test_means_are_those_of_mean_ablation(random_model, data):
    means = mean_outputs(random_model, data)
    width = data.tokens.shape[1]
    for component in ("head 1.0", "mlp 2"):
        python = mean_activation(random_model, data.tokens, component)[0]
        name = "blocks.1.attn.hook_result" if component == "head 1.0" else "blocks.2.hook_mlp_out"
        torch.testing.assert_close(means[name][:width], python, atol=1e-5, rtol=1e-5)
        assert means[name].shape[0] == random_model.cfg.n_ctx


def test_export_carries_every_weight_and_the_roles(random_model, data):
    export = explorer_export(random_model, data, Roles(2, 1, 3), negative_head=(2, 0))
    payload = export.to_json()
    assert set(payload["weights"]) == set(random_model.state_dict())
    assert payload["roles"] == {"elevation": [2, 1], "read_position": 3, "negative": [2, 0]}
    assert len(payload["means"]) == 2 * random_model.cfg.n_layers
    json.dumps(payload)  # JSON-ready


def test_export_refuses_a_head_the_model_lacks(random_model, data):
    with pytest.raises(BracketLensError, match="unknown head"):
        explorer_export(random_model, data, Roles(2, 5, 1))
    with pytest.raises(BracketLensError, match="unknown layer"):
        explorer_export(random_model, data, Roles(), negative_head=(7, 0))


def test_section_is_safe_inside_a_page(random_model, data):
    export = explorer_export(random_model, data[:20], Roles())
    section = explorer_section(export)
    # one module, one payload; no "</script" before the script's own end
    assert section.count("<script") == 2
    body = section.split('<script type="module">', 1)[1]
    assert body.count("</script") == 1 and body.endswith("</script>")
    assert "boot(" in section and 'id="explorer"' in section
    assert explorer_page(export).startswith("<!DOCTYPE html>")


def test_explore_without_anywidget_says_what_to_install(monkeypatch):
    from bracketlens.explorer import widget

    widget._widget_class.cache_clear()
    monkeypatch.setitem(sys.modules, "anywidget", None)  # import anywidget -> ImportError
    try:
        with pytest.raises(BracketLensError, match=r"bracketlens\[notebook\]"):
            widget.explore()
    finally:
        widget._widget_class.cache_clear()


def test_explore_refuses_a_bad_string(random_model, data):
    pytest.importorskip("anywidget")
    with pytest.raises(BracketLensError, match="only '\\(' and '\\)'"):
        explore(random_model, "(a)", data=data, roles=Roles())
    w = explore(random_model, "(()", data=data[:50], roles=Roles(), compare="()")
    assert (w.string, w.compare) == ("(()", "()")
    assert w.payload["roles"]["negative"] is None
