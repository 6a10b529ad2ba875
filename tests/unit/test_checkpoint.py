import json

import pytest
import torch
from safetensors.torch import save_file

from bracketlens import BracketLensError, BracketTransformer, load_model, save_checkpoint
from bracketlens.model import read_sidecar
from bracketlens.model.checkpoint import _read_torch, load_state


def test_safetensors_round_trip_with_sidecar(random_model, tmp_path):
    path = save_checkpoint(random_model, tmp_path / "m.safetensors", {"seed": 7})
    loaded = load_model(path)
    for name, tensor in random_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    side = read_sidecar(path)
    assert side["seed"] == 7 and side["config"]["d_model"] == 56
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_refuses_to_overwrite_unless_forced(random_model, tmp_path):
    path = save_checkpoint(random_model, tmp_path / "m.safetensors")
    with pytest.raises(BracketLensError, match=r"exists; choose another path or pass --force"):
        save_checkpoint(random_model, path)
    save_checkpoint(random_model, path, force=True)


def test_bad_output_paths(random_model, tmp_path):
    with pytest.raises(BracketLensError, match=r"must end in \.safetensors"):
        save_checkpoint(random_model, tmp_path / "m.pt")
    with pytest.raises(BracketLensError, match="does not exist"):
        save_checkpoint(random_model, tmp_path / "no" / "m.safetensors")


def test_course_style_pt_with_tl_buffers_loads(random_model, tmp_path):
    state = dict(random_model.state_dict())
    for layer in range(3):
        state[f"blocks.{layer}.attn.mask"] = torch.ones(42, 42, dtype=torch.bool).tril()
        state[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    torch.save(state, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert torch.equal(loaded.W_U, random_model.W_U)


def test_wrong_keys_and_shapes_are_named(random_model, tmp_path):
    state = dict(random_model.state_dict())
    state["blocks.0.attn.W_Q"] = torch.zeros(2, 56, 14)
    del state["unembed.b_U"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(BracketLensError) as err:
        load_model(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys: unembed.b_U" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "blocks.0.attn.W_Q (2, 56, 14) (expected (2, 56, 28))" in msg


def test_wrong_shape_safetensors(tmp_path):
    model = BracketTransformer()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["embed.W_E"] = torch.zeros(6, 56)
    save_file(state, tmp_path / "m.safetensors")
    with pytest.raises(BracketLensError, match=r"embed\.W_E"):
        load_model(tmp_path / "m.safetensors")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.pt", b"not a pickle", "not a loadable torch state dict"),
        ("x.safetensors", b"garbage", "not a readable safetensors file"),
        ("x.bin", b"", "unknown checkpoint format"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BracketLensError, match=message):
        load_model(tmp_path / name)


def test_pt_holding_something_else(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(BracketLensError, match="not a state dict"):
        load_model(tmp_path / "list.pt")
    with pytest.raises(BracketLensError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_load_state_direct_rejects_mismatch(random_model):
    with pytest.raises(BracketLensError, match="missing keys"):
        load_state(BracketTransformer(), {"embed.W_E": random_model.W_E}, source="dict")
    json.dumps(random_model.cfg.to_dict())  # the config is JSON-ready


def test_saved_files_get_ordinary_permissions(random_model, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = save_checkpoint(random_model, tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_subnormal_weights_are_flushed_to_zero_on_load(random_model, tmp_path):
    tiny = torch.finfo(torch.float32).tiny
    state = dict(random_model.state_dict())
    w_e = state["embed.W_E"].clone()
    w_e[0, :3] = torch.tensor([tiny / 4, -tiny / 1000, tiny])  # two subnormal, one normal
    state["embed.W_E"] = w_e
    path = tmp_path / "m.safetensors"
    save_file(
        state,
        path,
        metadata={"format_version": "1", "config": json.dumps(random_model.cfg.to_dict())},
    )
    loaded = load_model(path).embed.W_E
    assert loaded[0, :3].tolist() == [0.0, 0.0, tiny]
    assert torch.equal(loaded[1:], w_e[1:]) and torch.equal(loaded[0, 3:], w_e[0, 3:])


def test_flushing_the_course_checkpoint_changes_no_output(course_model, course_data):
    # the course weights hold subnormals (in W_E and the last MLP); flushing them leaves the
    # logits bit-identical, and only the flushed weights differ from the file's
    from tests.conftest import COURSE_WEIGHTS

    raw = BracketTransformer(course_model.cfg)
    load_state(raw, _read_torch(COURSE_WEIGHTS), source="course")
    tiny = torch.finfo(torch.float32).tiny
    flushed = 0
    for name, w in raw.state_dict().items():
        mine = course_model.state_dict()[name]
        subnormal = (w.abs() < tiny) & (w != 0)
        flushed += int(subnormal.sum())
        assert torch.equal(mine[~subnormal], w[~subnormal]) and not mine[subnormal].any(), name
    assert flushed > 2_000
    tokens = course_data.tokens[:2_000]
    with torch.no_grad():
        assert torch.equal(course_model(tokens), raw(tokens))
