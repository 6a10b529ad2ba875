"""Loading and saving checkpoints: course ``.pt`` state dicts and our safetensors files.

Our format is one ``.safetensors`` file whose header metadata holds the model
config (so the weights file alone is enough to load), plus a JSON sidecar next to
it (``model.json`` for ``model.safetensors``) with the training record: seed, data
recipe, steps, held-out accuracy and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from bracketlens.atomic import atomic_write
from bracketlens.errors import BracketLensError
from bracketlens.limits import MAX_CHECKPOINT_BYTES
from bracketlens.model.config import ModelConfig
from bracketlens.model.transformer import BracketTransformer

DEFAULT_WEIGHTS = "default.safetensors"
FORMAT_VERSION = 1
# TransformerLens HookedTransformer buffers that carry no learned information: a
# causal mask the bidirectional course model never applies, and the -1e5 fill value
# our forward hard-codes as IGNORE. Dropped on load.
_TL_BUFFERS = {"attn.mask", "attn.IGNORE"}


def bundled_weights_path() -> Path:
    """Path of the default checkpoint shipped inside the package."""
    return Path(str(resources.files("bracketlens.weights").joinpath(DEFAULT_WEIGHTS)))


def read_model(
    path: str | os.PathLike[str] | None = None, *, allow_nonfinite: bool = False
) -> BracketTransformer:
    """Read a model from a checkpoint file, ready for analysis: eval mode, gradients off.

    Args:
        path: ``None`` for the bundled default; a ``.pt`` TransformerLens state dict
            (e.g. the course checkpoint); or one of our ``.safetensors`` checkpoints.
        allow_nonfinite: load weights holding NaN or infinity (refused by default:
            such a model's predictions mean nothing).

    Raises:
        BracketLensError: missing file, unknown format, a bad config, weights of the
            wrong shape or type, or non-finite weights.
    """
    if path is None:
        path = bundled_weights_path()
        if not path.exists():
            raise BracketLensError(
                "no bundled default checkpoint in this installation; pass a checkpoint path "
                "or train one with `bracketlens train`"
            )
    state, cfg = read_checkpoint(path)
    state = check_state(state, cfg, source=str(path), allow_nonfinite=allow_nonfinite)
    model = BracketTransformer(cfg)
    model.load_state_dict(flush_subnormals(state), strict=True)
    model.eval()
    model.requires_grad_(False)
    return model


def flush_subnormals(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state with every subnormal weight (0 < |w| < 1.2e-38 in float32) set to zero.

    Weight decay leaves the weights of unused embeddings and dead neurons subnormal
    (the course checkpoint has 2,470 of them, in ``W_E`` and the last MLP). On CPUs
    that handle subnormals in microcode, every matrix product that touches them runs
    several times slower (a forward pass over the course's strings: 1.7x), and the
    activations they feed are subnormal too. Their contribution is below float32's
    resolution of any activation here: the course model's outputs are bit-identical.
    """
    out = {}
    for name, w in state.items():
        if w.is_floating_point():
            tiny = torch.finfo(w.dtype).tiny
            w = torch.where(w.abs() < tiny, torch.zeros_like(w), w)
        out[name] = w
    return out


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], ModelConfig]:
    """Read a checkpoint file into a state dict and the config it was saved with."""
    path = Path(path)
    if path.is_dir():
        raise BracketLensError(f"checkpoint {path} is a folder; pass the checkpoint file inside it")
    if not path.is_file():
        raise BracketLensError(f"checkpoint {path} does not exist")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise BracketLensError(
            f"checkpoint {path} is {path.stat().st_size / 2**30:.1f} GiB; checkpoints are limited "
            f"to {MAX_CHECKPOINT_BYTES // 2**30} GiB (the bracket classifiers are a few hundred KB)"
        )
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".pt", ".pth"):
        return _read_torch(path), ModelConfig()
    raise BracketLensError(
        f"unknown checkpoint format {path.suffix!r} for {path}: use .safetensors or .pt"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], ModelConfig]:
    try:
        state = load_file(path, device="cpu")
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BracketLensError(f"{path} is not a readable safetensors file: {first}") from None
    version = header.get("format_version", str(FORMAT_VERSION))
    if version != str(FORMAT_VERSION):
        raise BracketLensError(
            f"checkpoint {path} has format version {version!r}; this bracketlens reads "
            f"version {FORMAT_VERSION}: upgrade bracketlens or re-save the checkpoint"
        )
    try:
        cfg = ModelConfig.from_dict(json.loads(header.get("config", "{}")))
    except (json.JSONDecodeError, RecursionError) as e:
        raise BracketLensError(
            f"checkpoint {path} has a config that is not valid JSON ({e})"
        ) from None
    except BracketLensError as e:
        raise BracketLensError(f"checkpoint {path} has a bad config: {e}") from None
    return state, cfg


def _read_torch(path: Path) -> dict[str, Tensor]:
    # torch's own messages are never shown: they advise weights_only=False, which
    # would run whatever code the file holds.
    try:
        with warnings.catch_warnings():  # e.g. about pickle protocols: more lines on stderr
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "global" in str(e):
            raise BracketLensError(
                f"{path} holds Python objects besides tensors, which could run code when "
                "loaded, so it is not read; re-save it as a state dict of tensors "
                "(torch.save(model.state_dict(), path)) or as .safetensors"
            ) from None
        raise BracketLensError(
            f"{path} is not a loadable torch state dict (corrupt, or another format)"
        ) from None
    except Exception as e:  # torch raises many types for corrupt or truncated files
        raise BracketLensError(
            f"{path} is not a loadable torch state dict ({type(e).__name__}; corrupt or truncated?)"
        ) from None
    if not isinstance(state, Mapping):
        raise BracketLensError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def check_state(
    state: Mapping[Any, Any],
    cfg: ModelConfig,
    source: str,
    *,
    allow_nonfinite: bool = False,
) -> dict[str, Tensor]:
    """The state dict as float32 tensors, once it fits ``cfg`` exactly.

    Keys, value types, shapes and finiteness are checked before any model is built,
    so a config that disagrees with its tensors is named, not run.

    Raises:
        BracketLensError: naming every missing, unexpected, non-tensor or misshapen
            entry; or the entries holding NaN or infinity unless ``allow_nonfinite``.
    """
    state = {k: v for k, v in state.items() if not (isinstance(k, str) and _is_tl_buffer(k))}
    expected = cfg.param_shapes()
    bad_keys = sorted(repr(k) for k in state if not isinstance(k, str))
    missing = [k for k in expected if k not in state]
    extra = sorted(k for k in state if isinstance(k, str) and k not in expected)
    not_dense = [
        f"{k} ({_layout(v)})" for k, v in state.items() if k in expected and _layout(v) != "dense"
    ]
    not_tensor = [
        f"{k} ({v.dtype if isinstance(v, Tensor) else type(v).__name__})"
        for k, v in state.items()
        if k in expected
        and _layout(v) == "dense"
        and not (isinstance(v, Tensor) and v.is_floating_point())
    ]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {shape})"
        for k, shape in expected.items()  # in model order, whatever order the file has
        if isinstance(state.get(k), Tensor) and tuple(state[k].shape) != shape
    ]
    problems = [
        f"{label}: {_few(items)}"
        for label, items in (
            ("keys that are not names", bad_keys),
            ("missing keys", missing),
            ("unexpected keys", extra),
            ("not dense tensors", not_dense),
            ("not float tensors", not_tensor),
            ("wrong shapes", wrong),
        )
        if items
    ]
    if problems:
        raise BracketLensError(
            f"checkpoint {source} does not fit a bracket classifier of this architecture "
            f"({cfg.n_layers} layers, {cfg.n_heads} heads, d_model "
            f"{cfg.d_model}): " + "; ".join(problems)
        )
    tensors = {k: cast(Tensor, v).to(torch.float32) for k, v in state.items() if k in expected}
    nonfinite = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if nonfinite and not allow_nonfinite:
        raise BracketLensError(
            f"checkpoint {source} has NaN or infinite weights in {', '.join(nonfinite)}, so its "
            "predictions mean nothing; pass --allow-nonfinite to load it anyway"
        )
    return tensors


def _layout(value: object) -> str:
    """``"dense"`` for an ordinary tensor (or a non-tensor), else the layout that is refused.

    Sparse, quantised, meta and other layouts hold no plain array of weights: torch
    raises on them deep inside the model (``NotImplementedError`` for the sparse
    backend), so they are named here as a checkpoint that does not fit.
    """
    if not isinstance(value, Tensor):
        return "dense"
    if value.is_meta:
        return "meta, no data"
    if value.is_quantized:
        return f"quantised {value.dtype}"
    if value.layout != torch.strided:
        return str(value.layout).removeprefix("torch.")
    return "dense"


def _few(items: list[str], shown: int = 6) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def load_state(model: BracketTransformer, state: Mapping[str, Tensor], source: str) -> None:
    """Load a state dict with strict key and shape matching, naming every mismatch."""
    model.load_state_dict(check_state(state, model.cfg, source), strict=True)


def save_checkpoint(
    model: BracketTransformer,
    path: str | os.PathLike[str],
    record: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Save weights (config in the header) and a JSON sidecar, each written atomically.

    Each file is written to a temporary name in the target folder and renamed into
    place, so an interrupted save never leaves a half-written checkpoint.

    Raises:
        BracketLensError: the path exists (unless ``force``), has the wrong suffix, or
            its folder is not writable.
    """
    path = check_output_path(path, force=force)
    meta = {"format_version": str(FORMAT_VERSION), "config": json.dumps(model.cfg.to_dict())}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    sidecar = {"format_version": FORMAT_VERSION, "config": model.cfg.to_dict(), **(record or {})}
    atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2)))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def check_output_path(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check that a checkpoint and its sidecar can be written at ``path`` before any work.

    ``force`` allows replacing an existing checkpoint and its training record, never
    another file that happens to have the sidecar's name (``data.json`` for
    ``data.safetensors``).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise BracketLensError(f"checkpoint path must end in .safetensors, got {path}")
    side = sidecar_path(path)
    for target in (path, side):
        if target.is_dir():
            raise BracketLensError(f"{target} is a folder; choose another checkpoint path")
    if path.exists() and not force:
        raise BracketLensError(f"{path} exists; choose another path or pass --force")
    if side.exists() and not force:
        raise BracketLensError(
            f"{side} exists and the training record would be written there; choose another "
            "path or pass --force"
        )
    if side.exists() and not is_training_record(side):
        raise BracketLensError(
            f"{side} exists and is not a bracketlens training record, so it is never "
            "overwritten (the record goes beside the checkpoint); choose another checkpoint path"
        )
    if not path.parent.is_dir():
        raise BracketLensError(f"folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise BracketLensError(f"folder {path.parent} is not writable; choose another path")
    return path


def is_training_record(side: Path) -> bool:
    """Whether ``side`` is a training record that :func:`save_checkpoint` wrote."""
    try:
        if side.stat().st_size > 2**20:  # records are a few KB
            return False
        record = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(record, dict) and {"format_version", "config"} <= set(record)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record saved next to a checkpoint ({} if there is none)."""
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


def _is_tl_buffer(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 4 and parts[0] == "blocks" and ".".join(parts[2:]) in _TL_BUFFERS
