"""The residual stream as a sum of components, and each component's share of a direction.

The residual stream entering the final LayerNorm is exactly::

    embeddings + sum over heads of head outputs + sum over layers of MLP outputs
    + sum over layers of the attention output bias b_O

Components are, in order: ``embeds`` (token + positional), then per layer each
head (``head L.H``, without ``b_O``) and the MLP (``mlp L``, with its ``b_out``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.activations import run_and_reduce
from bracketlens.components import Component, all_components
from bracketlens.errors import BracketLensError
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer


def component_labels(cfg: ModelConfig) -> list[str]:
    """``["embeds", "head 0.0", "head 0.1", "mlp 0", "head 1.0", ...]``."""
    return ["embeds", *(c.label for c in all_components(cfg))]


@dataclass(frozen=True)
class ComponentStack:
    """Per-component values with their labels.

    Attributes:
        values: ``[component, batch, ...]``: full outputs ``[.., seq, d_model]`` or
            projections ``[.., batch]``.
        labels: one label per component (see :func:`component_labels`).
        bias: what the components leave out (the summed attention ``b_O``), in the
            same units as one string's value.
    """

    values: Tensor
    labels: list[str]
    bias: Tensor

    def total(self) -> Tensor:
        """The sum of all components plus the bias: the residual stream (or its projection)."""
        return self.values.sum(0) + self.bias

    def __getitem__(self, label: str) -> Tensor:
        return self.values[self.labels.index(label)]

    def centred(self, balanced: Bool[Tensor, " batch"]) -> ComponentStack:
        """Each component minus its mean over the balanced strings.

        Centring a constant leaves 0, so the bias drops out and the centred stack
        still sums to the centred total.
        """
        values = centre_on_balanced(self.values, balanced)
        return ComponentStack(values, self.labels, torch.zeros_like(self.bias))


def _component_hooks(cfg: ModelConfig, reduce: Callable[[Tensor], Tensor]) -> dict:
    hooks = {"hook_embed": [reduce], "hook_pos_embed": [reduce]}
    for layer in range(cfg.n_layers):
        hooks[act_name("result", layer)] = [reduce]
        hooks[act_name("mlp_out", layer)] = [reduce]
    return hooks


def stack_components(
    embeds: Tensor, layers: Sequence[tuple[Sequence[Tensor], Tensor]], bias: Tensor
) -> ComponentStack:
    """Stack ``embeds``, then each layer's heads and its MLP, labelled in that order.

    The one place components are put in order (as ``decompose_resid(return_labels=True)``
    does in TransformerLens); ``layers[l]`` is ``(head values, MLP value)`` of layer ``l``.
    """
    values, labels = [embeds], ["embeds"]
    for layer, (heads, mlp) in enumerate(layers):
        values += [*heads, mlp]
        labels += [Component.at(layer, h).label for h in range(len(heads))]
        labels.append(Component.at(layer).label)
    return ComponentStack(torch.stack(values), labels, bias)


def _stack(cfg: ModelConfig, acts: dict[str, list[Tensor]], bias: Tensor) -> ComponentStack:
    """Reduced hook outputs as a component stack: [component, batch, ...]."""
    layers = []
    for layer in range(cfg.n_layers):
        heads = acts[act_name("result", layer)][0]  # [batch, (seq,) head, ...]
        head_dim = 2 if heads.dim() == 4 else 1
        layers.append((heads.unbind(head_dim), acts[act_name("mlp_out", layer)][0]))
    return stack_components(acts["hook_embed"][0] + acts["hook_pos_embed"][0], layers, bias)


def out_by_components(
    model: BracketTransformer, tokens: Int[Tensor, "batch seq"], batch_size: int = DEFAULT_BATCH
) -> ComponentStack:
    """Every component's output at every position, ``[component, batch, seq, d_model]``.

    Memory: 10 x batch x seq x d_model floats (about 1 GB for 100,000 strings);
    :func:`components_in_direction` keeps only a projection.
    """
    acts = run_and_reduce(model, tokens, _component_hooks(model.cfg, lambda a: a), batch_size)
    bias = model.b_O.sum(0).detach()
    return _stack(model.cfg, acts, bias)


def components_in_direction(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    direction: Float[Tensor, " d_model"],
    position: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> ComponentStack:
    """Each component's output at ``position`` projected on ``direction``, ``[component, batch]``.

    Same numbers as projecting :func:`out_by_components`, without building it.
    """
    direction = direction.detach().to(torch.float32)

    def project(act: Tensor) -> Tensor:
        return act[:, position] @ direction

    acts = run_and_reduce(model, tokens, _component_hooks(model.cfg, project), batch_size)
    bias = model.b_O.sum(0).detach() @ direction
    return _stack(model.cfg, acts, bias)


def centre_on_balanced(
    values: Float[Tensor, "component batch"], balanced: Bool[Tensor, " batch"]
) -> Float[Tensor, "component batch"]:
    """Subtract each component's mean over the balanced strings."""
    if not balanced.any():
        raise BracketLensError("centring on balanced strings needs at least one balanced string")
    return values - values[:, balanced].mean(dim=1, keepdim=True)


def unbalanced_attribution(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    balanced: Bool[Tensor, " batch"],
    direction: Float[Tensor, " d_model"],
    batch_size: int = DEFAULT_BATCH,
) -> ComponentStack:
    """Each component's output in ``direction`` at position 0, centred on balanced strings."""
    return components_in_direction(model, tokens, direction, 0, batch_size).centred(balanced)
