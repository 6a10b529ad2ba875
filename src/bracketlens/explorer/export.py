"""What the in-browser model needs, from Python: weights, mean activations, roles.

Every parameter travels as little-endian float32 bytes in base64 (the model is
about 60,000 numbers, some 330 KB of text). The JavaScript forward pass decodes
them into float64 arrays and computes in float64, so the only difference from
the PyTorch model is PyTorch's own float32 rounding.

The means are those of mean ablation in :mod:`bracketlens.interventions.ablate`: each
head's ``hook_result`` and each MLP's ``hook_mlp_out``, averaged over the strings
at every position. They are taken with the strings padded to the full context,
so that every position the explorer can show has one; at the positions the data
reaches, that gives the same numbers as ``mean_activation(model, data.tokens, ...)``
(pad keys are masked, so padding does not change the activations before it).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from bracketlens.circuits.elevation import Roles
from bracketlens.components import Component, all_components
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import N_CTX, tokenize
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def encode(tensor: Tensor) -> dict[str, object]:
    """A tensor as ``{"shape": [...], "data": base64 of little-endian float32}``."""
    array = tensor.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4")
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def decode(encoded: dict[str, object]) -> np.ndarray:
    """The inverse of :func:`encode` (float32 array of the recorded shape)."""
    raw = base64.b64decode(str(encoded["data"]))
    shape = [int(x) for x in encoded["shape"]]  # type: ignore[attr-defined]
    return np.frombuffer(raw, dtype="<f4").reshape(shape)


@dataclass(frozen=True)
class ExplorerExport:
    """The explorer's payload: config, encoded weights and means, the localised roles.

    Attributes:
        config: the architecture numbers the forward pass needs.
        weights: state-dict name -> encoded tensor.
        means: hook name (``blocks.L.attn.hook_result``, ``blocks.L.hook_mlp_out``) ->
            encoded mean over the data, ``[n_ctx, (head,) d_model]``.
        roles: the elevation head, its read position, the negative head (or None).
        means_from: which strings the means were taken over.
    """

    config: dict[str, object]
    weights: dict[str, dict[str, object]]
    means: dict[str, dict[str, object]]
    roles: dict[str, object]
    means_from: str

    def to_json(self) -> dict[str, object]:
        """The payload the JavaScript module reads."""
        return {
            "config": self.config,
            "weights": self.weights,
            "means": self.means,
            "roles": self.roles,
            "means_from": self.means_from,
        }


def _config(model: BracketTransformer) -> dict[str, object]:
    cfg = model.cfg
    if cfg.act_fn != "relu" or cfg.attention_dir != "bidirectional":
        raise BracketLensError(
            f"the explorer runs the bidirectional ReLU model only (got act_fn={cfg.act_fn!r}, "
            f"attention_dir={cfg.attention_dir!r})"
        )
    keys = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_ctx", "d_vocab", "eps")
    return {k: getattr(cfg, k) for k in keys} | {"pad_token_id": cfg.pad_token_id}


@torch.no_grad()
def mean_outputs(model: BracketTransformer, data: BracketDataset) -> dict[str, Tensor]:
    """Every component's mean output at every position: hook name -> ``[n_ctx, (head,) d]``.

    Each batch's activations are summed (in float64) inside the hook that sees them,
    so no batch of them is ever kept.
    """
    names = [c.hook_name for c in all_components(model.cfg) if c.head in (None, 0)]
    sums: dict[str, Tensor] = {}

    def add(act: Tensor, hook: HookPoint) -> None:
        total = act.sum(0, dtype=torch.float64)
        name = str(hook.name)
        sums[name] = sums[name] + total if name in sums else total

    for start in range(0, len(data), DEFAULT_BATCH):
        tokens = tokenize(data.strings[start : start + DEFAULT_BATCH], pad_to=N_CTX)
        model.run_with_hooks(tokens, fwd_hooks=[(name, add) for name in names])
    return {name: (sums[name] / len(data)).float() for name in names}


def explorer_export(
    model: BracketTransformer,
    data: BracketDataset,
    roles: Roles | None,
    negative_head: tuple[int, int] | None = None,
) -> ExplorerExport:
    """Export the model, the mean activations over ``data`` and the roles for the explorer.

    Args:
        model: the model to run in the page.
        data: the strings whose mean activations mean ablation uses (the report's data).
        roles: the localised elevation head and the position it reads (None where
            localisation found no elevation circuit: nothing is highlighted then).
        negative_head: (layer, head) of the localised negative head, if one was found.
    """
    if len(data) == 0:
        raise BracketLensError("the explorer needs at least one string to average over")
    if roles is not None:
        Component.at(roles.elevation_layer, roles.elevation_head).check(model.cfg)
    if negative_head is not None:
        Component.at(*negative_head).check(model.cfg)
    return ExplorerExport(
        config=_config(model),
        weights={name: encode(t) for name, t in model.state_dict().items()},
        means={name: encode(t) for name, t in mean_outputs(model, data).items()},
        roles={
            "elevation": None if roles is None else [roles.elevation_layer, roles.elevation_head],
            "read_position": None if roles is None else roles.read_position,
            "negative": list(negative_head) if negative_head is not None else None,
        },
        means_from=f"{len(data):,} strings ({data.description})" if data.description else "",
    )
