"""Checkpoints are checked whole at load: config, tensor types and shapes, finiteness."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from bracketlens import BracketLensError, BracketTransformer, ModelConfig, load_model
from bracketlens.cli import main
from bracketlens.model.checkpoint import check_output_path, check_state, save_checkpoint


def _state(cfg=None):
    model = BracketTransformer(cfg)
    model.init_weights(seed=0)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _safetensors(path, config_text, state=None):
    save_file(_state() if state is None else state, path, metadata={"config": config_text})
    return path


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("{bad", "config that is not valid JSON"),
        ("[1, 2]", "a model config is a JSON object, not list"),
        ('{"d_model": "56"}', "d_model must be a whole number from 1 to 65,536; got '56'"),
        ('{"d_vocab": 3}', "d_vocab must be a whole number from 5"),
        ('{"n_ctx": 10}', "n_ctx must be a whole number from 42"),
        ('{"n_layers": true}', "n_layers must be a whole number"),
        ('{"act_fn": "gelu"}', "act_fn is 'gelu'; this architecture only runs with 'relu'"),
        ('{"eps": -1}', "eps must be a number between 0 and 1"),
        ('{"d_modle": 56}', "unknown model config fields: d_modle"),
        ("[" * 5000 + "]" * 5000, "config that is not valid JSON (maximum recursion depth"),
    ],
)
def test_bad_safetensors_config_is_one_clear_error(tmp_path, config_text, message):
    path = _safetensors(tmp_path / "m.safetensors", config_text)
    with pytest.raises(BracketLensError, match=r"m\.safetensors") as err:
        load_model(path)
    assert message in str(err.value)


def test_config_disagreeing_with_tensors_is_named_before_any_model_is_built(tmp_path):
    big = json.dumps(ModelConfig(d_model=60_000, d_mlp=60_000).to_dict())
    path = _safetensors(tmp_path / "m.safetensors", big)  # tensors of the default shapes
    with pytest.raises(BracketLensError, match=r"wrong shapes: embed\.W_E \(5, 56\)"):
        load_model(path)


def test_param_shapes_match_the_model():
    for cfg in (ModelConfig(), ModelConfig(n_layers=1, n_heads=3, d_model=8, d_head=5, d_mlp=7)):
        model = BracketTransformer(cfg)
        actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert cfg.param_shapes() == actual


def test_pt_of_strings_and_ints(tmp_path):
    state = _state()
    torch.save(state | {"embed.W_E": "abc"}, tmp_path / "s.pt")
    torch.save(state | {"unembed.b_U": torch.tensor([1, 2])}, tmp_path / "i.pt")
    with pytest.raises(BracketLensError, match=r"not float tensors: embed\.W_E \(str\)"):
        load_model(tmp_path / "s.pt")
    with pytest.raises(BracketLensError, match=r"unembed\.b_U \(torch\.int64\)"):
        load_model(tmp_path / "i.pt")


def test_missing_keys_are_summarised(tmp_path):
    torch.save({"embed.W_E": torch.zeros(5, 56)}, tmp_path / "m.pt")
    with pytest.raises(BracketLensError, match=r"and \d+ more") as err:
        load_model(tmp_path / "m.pt")
    assert len(str(err.value)) < 600


def test_nonfinite_weights_refused_unless_allowed(tmp_path):
    state = _state()
    state["blocks.1.mlp.W_in"][0, 0] = float("nan")
    state["unembed.b_U"][0] = float("inf")
    path = _safetensors(tmp_path / "m.safetensors", json.dumps(ModelConfig().to_dict()), state)
    with pytest.raises(BracketLensError, match=r"NaN or infinite weights in blocks\.1\.mlp\.W_in"):
        load_model(path)
    model = load_model(path, allow_nonfinite=True)
    assert torch.isnan(model.blocks[1].mlp.W_in[0, 0])


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_unsafe_pickle_never_shows_torchs_advice(tmp_path):
    torch.save({"embed.W_E": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(BracketLensError) as err:
        load_model(tmp_path / "evil.pt")
    message = str(err.value)
    assert "could run code" in message and "\n" not in message
    assert "weights_only" not in message and "trusted" not in message


def test_truncated_pickle(tmp_path, recwarn):
    (tmp_path / "t.pt").write_bytes(pickle.dumps({"a": 1}, protocol=4)[:5])
    with pytest.raises(BracketLensError, match="not a loadable torch state dict") as err:
        load_model(tmp_path / "t.pt")
    assert "weights_only" not in str(err.value)
    assert not recwarn.list  # torch's warning would be more lines on stderr


def test_folder_is_not_said_not_to_exist(tmp_path):
    (tmp_path / "m.pt").mkdir()
    with pytest.raises(BracketLensError, match="is a folder"):
        load_model(tmp_path / "m.pt")


def test_future_format_version(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_state(), path, metadata={"format_version": "9"})
    with pytest.raises(BracketLensError, match="format version '9'"):
        load_model(path)


def test_sidecar_collision_with_a_users_file(random_model, tmp_path):
    """`--out brackets_data.safetensors` must not destroy brackets_data.json."""
    data = tmp_path / "brackets_data.json"
    data.write_text('[["()", true]]')
    out = tmp_path / "brackets_data.safetensors"
    with pytest.raises(BracketLensError, match="training record would be written there"):
        check_output_path(out)
    with pytest.raises(BracketLensError, match="is not a bracketlens training record"):
        check_output_path(out, force=True)
    with pytest.raises(BracketLensError, match="is not a bracketlens training record"):
        save_checkpoint(random_model, out, force=True)
    assert data.read_text() == '[["()", true]]' and not out.exists()


def test_force_replaces_our_own_sidecar(random_model, tmp_path):
    path = save_checkpoint(random_model, tmp_path / "m.safetensors", {"seed": 1})
    with pytest.raises(BracketLensError, match="pass --force"):
        check_output_path(path)
    save_checkpoint(random_model, path, {"seed": 2}, force=True)
    assert json.loads((tmp_path / "m.json").read_text())["seed"] == 2


def test_output_path_that_is_a_folder(tmp_path):
    (tmp_path / "m.json").mkdir()
    with pytest.raises(BracketLensError, match="is a folder"):
        check_output_path(tmp_path / "m.safetensors", force=True)


def test_oversized_checkpoint_is_refused_by_size(tmp_path):
    path = tmp_path / "m.pt"
    with path.open("wb") as f:
        f.truncate(3 * 2**30)  # sparse
    with pytest.raises(BracketLensError, match="checkpoints are limited to 1 GiB"):
        load_model(path)


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda w: w.to_sparse(), "sparse_coo"),
        (lambda w: w.to_sparse_csr(), "sparse_csr"),
        (lambda w: torch.quantize_per_tensor(w, 0.1, 0, torch.qint8), "quantised torch.qint8"),
        (lambda w: torch.empty_like(w, device="meta"), "meta, no data"),
    ],
)
def test_a_tensor_that_is_not_dense_does_not_fit(tmp_path, recwarn, make, shown):
    state = _state()
    state["blocks.0.attn.W_Q"] = make(state["blocks.0.attn.W_Q"])
    with pytest.raises(BracketLensError, match="does not fit a bracket classifier") as err:
        check_state(state, ModelConfig(), source="m.pt")
    assert f"not dense tensors: blocks.0.attn.W_Q ({shown})" in str(err.value)


def test_a_sparse_tensor_in_a_pt_file_is_one_line_from_the_cli(tmp_path, capsys):
    state = _state()
    state["blocks.0.attn.W_Q"] = state["blocks.0.attn.W_Q"].to_sparse()
    torch.save(state, tmp_path / "sparse.pt")
    assert main(["predict", "()", "--weights", str(tmp_path / "sparse.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not dense tensors: blocks.0.attn.W_Q (sparse_coo)" in err
