"""Loading and saving checkpoints: course ``.pt`` state dicts and our safetensors files.

Our format is one ``.safetensors`` file whose header metadata holds the model
config (so the weights file alone is enough to load), plus a JSON sidecar next to
it (``model.json`` for ``model.safetensors``) with the training record: seed, data
recipe, steps, held-out accuracy and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer, ModelConfig

DEFAULT_WEIGHTS = "default.safetensors"
# A bare name (no path separator, no extension) that builds a model instead of reading one.
COMPILED = "compiled"
FORMAT_VERSION = 1
# TransformerLens HookedTransformer buffers that carry no learned information: a
# causal mask the bidirectional course model never applies, and the -1e5 fill value
# our forward hard-codes as IGNORE. Dropped on load.
_TL_BUFFERS = {"attn.mask", "attn.IGNORE"}


def bundled_weights_path() -> Path:
    """Path of the default checkpoint shipped inside the package."""
    return Path(str(resources.files("bracketlens.weights").joinpath(DEFAULT_WEIGHTS)))


def load_model(path: str | os.PathLike[str] | None = None) -> BracketTransformer:
    """Load a model ready for analysis: eval mode, gradients off.

    Args:
        path: ``None`` for the bundled default; ``"compiled"`` for the hand-built
            model of :mod:`bracketlens.compiled` (a file of that name is read only when
            written with a separator, ``./compiled``); a ``.pt`` TransformerLens state
            dict (e.g. the course checkpoint); or one of our ``.safetensors`` checkpoints.

    Raises:
        BracketLensError: missing file, unknown format, or weights of the wrong shape.
    """
    if isinstance(path, str) and path == COMPILED:
        from bracketlens.compiled import build_compiled  # builds in milliseconds

        return build_compiled()
    if path is None:
        path = bundled_weights_path()
        if not path.exists():
            raise BracketLensError(
                "no bundled default checkpoint in this installation; pass a checkpoint path "
                "or train one with `bracketlens train`"
            )
    state, cfg = read_checkpoint(path)
    model = BracketTransformer(cfg)
    load_state(model, state, source=str(path))
    model.eval()
    model.requires_grad_(False)
    return model


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], ModelConfig]:
    """Read a checkpoint file into a state dict and the config it was saved with."""
    path = Path(path)
    if not path.is_file():
        raise BracketLensError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path, device="cpu")
            with safe_open(path, framework="pt") as f:
                header = f.metadata() or {}
        except (SafetensorError, ValueError, OSError) as e:
            raise BracketLensError(f"{path} is not a readable safetensors file: {e}") from None
        cfg = ModelConfig.from_dict(json.loads(header.get("config", "{}")))
        return state, cfg
    if path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt or unsafe pickles
            raise BracketLensError(
                f"{path} is not a loadable torch state dict ({type(e).__name__}: {e})"
            ) from None
        if not isinstance(state, Mapping):
            raise BracketLensError(f"{path} holds a {type(state).__name__}, not a state dict")
        return dict(state), ModelConfig()
    raise BracketLensError(
        f"unknown checkpoint format {path.suffix!r} for {path}: use .safetensors or .pt"
    )


def load_state(model: BracketTransformer, state: Mapping[str, Tensor], source: str) -> None:
    """Load a state dict with strict key and shape matching, naming every mismatch."""
    state = {k: v for k, v in state.items() if not _is_tl_buffer(k)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected keys: {', '.join(extra)}")
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong)}")
    if problems:
        raise BracketLensError(
            f"checkpoint {source} does not fit a bracket classifier of this architecture "
            f"({model.cfg.n_layers} layers, {model.cfg.n_heads} heads, d_model "
            f"{model.cfg.d_model}): " + "; ".join(problems)
        )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)


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
    _atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2)))
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def check_output_path(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check that a checkpoint can be written at ``path`` before any work is done."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise BracketLensError(f"checkpoint path must end in .safetensors, got {path}")
    if path.exists() and not force:
        raise BracketLensError(f"{path} exists; choose another path or pass --force")
    if not path.parent.is_dir():
        raise BracketLensError(f"folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise BracketLensError(f"folder {path.parent} is not writable; choose another path")
    return path


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record saved next to a checkpoint ({} if there is none)."""
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates the file 0600; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _is_tl_buffer(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 4 and parts[0] == "blocks" and ".".join(parts[2:]) in _TL_BUFFERS
