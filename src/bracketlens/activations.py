"""Activations from one batched forward pass, caching only the hooks asked for.

The primitive is :func:`run_and_reduce`: every batch runs once with caching hooks
on the requested names only, each cached tensor is reduced on the spot (kept
whole, sliced at a position, projected on a direction...) and written into a
buffer preallocated for the whole data set. Nothing else is kept, so memory
grows with what the analysis keeps, not with what the model computes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from bracketlens.errors import BracketLensError
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer

Reducer = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ActSlice:
    """The part of one hook's activation that a later step reads: one position and/or
    one head (``None``: all of them). A clean pass that keeps only these slices keeps
    a fraction of the activations."""

    hook_name: str
    position: int | None = None
    head: int | None = None

    def take(self, act: Tensor) -> Tensor:
        """The slice of ``act`` (``[batch, pos, (head,) d]``; an attention pattern's,
        ``[batch, head, query, key]``, at a key position: what every query pays it)."""
        if self.is_pattern:
            act = act if self.head is None else act[:, self.head]
            return act if self.position is None else act[..., self.position]
        if self.position is not None:
            act = act[:, self.position]
            return act if self.head is None else act[:, self.head]
        return act if self.head is None else act[:, :, self.head]

    @property
    def is_pattern(self) -> bool:
        """Whether this is a slice of attention scores or pattern (its position: a key)."""
        return self.hook_name.endswith(("attn.hook_pattern", "attn.hook_attn_scores"))


def check_hook_names(model: BracketTransformer, names: Sequence[str]) -> None:
    """Raise :class:`BracketLensError` for unknown hook names, suggesting close matches."""
    known = list(model.hook_dict)
    for name in names:
        if name not in model.hook_dict:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BracketLensError(f"unknown hook name {name!r}{hint}")


@torch.no_grad()  # not inference_mode: callers may modify the results in place
def run_and_reduce(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    reducers: Mapping[str, Sequence[Reducer]],
    batch_size: int = DEFAULT_BATCH,
    stop_at_layer: int | None = None,
) -> dict[str, list[Tensor]]:
    """One forward pass per batch; each hook's activation goes through its reducers.

    Args:
        model: the model.
        tokens: ``[batch, seq]`` tokens (all strings padded to the same length, so
            that every batch gives activations of the same shape).
        reducers: hook name -> functions from the batch's activation ``[b, ...]`` to
            a tensor ``[b, ...]`` to keep.
        batch_size: strings per forward pass.
        stop_at_layer: end each pass at that block's input (every hook asked for
            must come before it), as :meth:`BracketTransformer.forward` does.

    Returns:
        hook name -> one tensor over all strings per reducer, in the reducers' order.
    """
    check_hook_names(model, list(reducers))
    buffers: dict[str, list[Tensor]] = {}
    n = len(tokens)

    def make_hook(name: str, start: int, stop: int) -> Callable[..., None]:
        def hook(act: Tensor, hook: object) -> None:
            outs = [reduce(act) for reduce in reducers[name]]
            if name not in buffers:  # allocate once: per-batch clones fragment the heap
                buffers[name] = [torch.empty((n, *o.shape[1:]), dtype=o.dtype) for o in outs]
            for buf, out in zip(buffers[name], outs, strict=True):
                buf[start:stop] = out

        return hook

    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        hooks: list[tuple[str | Callable[..., object], Callable[..., object]]] = [
            (name, make_hook(name, start, stop)) for name in reducers
        ]
        model.run_with_hooks(tokens[start:stop], fwd_hooks=hooks, stop_at_layer=stop_at_layer)
    return buffers


def get_activations(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    names: str | Sequence[str],
    batch_size: int = DEFAULT_BATCH,
    *,
    stop_early: bool = False,
) -> dict[str, Tensor]:
    """Activations for the hook names asked for, over all strings: name -> tensor.

    With ``stop_early``, each pass ends after the last block a name belongs to.
    """
    names = [names] if isinstance(names, str) else list(names)
    stop = _last_block(model, names) + 1 if stop_early else None
    stop = stop if stop is not None and stop < model.cfg.n_layers else None
    out = run_and_reduce(model, tokens, {name: [_keep] for name in names}, batch_size, stop)
    return {name: tensors[0] for name, tensors in out.items()}


def get_slices(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    parts: Sequence[ActSlice],
    batch_size: int = DEFAULT_BATCH,
) -> dict[ActSlice, Tensor]:
    """The slices asked for, over all strings, from one pass keeping only them."""
    by_hook: dict[str, list[ActSlice]] = {}
    for part in dict.fromkeys(parts):
        by_hook.setdefault(part.hook_name, []).append(part)
    reducers = {name: [part.take for part in hook_parts] for name, hook_parts in by_hook.items()}
    out = run_and_reduce(model, tokens, reducers, batch_size)
    return {
        part: value
        for name, hook_parts in by_hook.items()
        for part, value in zip(hook_parts, out[name], strict=True)
    }


def _keep(act: Tensor) -> Tensor:
    return act


def _last_block(model: BracketTransformer, names: Sequence[str]) -> int:
    """The last block any of ``names`` is in (hooks outside the blocks: past the last)."""
    layers = [
        int(n.split(".")[1]) if n.startswith("blocks.") else model.cfg.n_layers for n in names
    ]
    return max(layers, default=model.cfg.n_layers)


def layernorm_hook_names(model: BracketTransformer, layernorm: str) -> tuple[str, str]:
    """The hooks just before and just after a LayerNorm: (input, normalized output).

    Args:
        layernorm: ``"ln_final"``, or ``"blocks.L.ln1"`` / ``"blocks.L.ln2"``.
    """
    n_layers = model.cfg.n_layers
    if layernorm == "ln_final":
        return act_name("resid_post", n_layers - 1), "ln_final.hook_normalized"
    parts = layernorm.split(".")
    valid = len(parts) == 3 and parts[0] == "blocks" and parts[2] in ("ln1", "ln2")
    if not valid or not parts[1].isdigit() or int(parts[1]) >= n_layers:
        raise BracketLensError(
            f"unknown LayerNorm {layernorm!r}: use 'ln_final' or 'blocks.L.ln1' / "
            f"'blocks.L.ln2' with L in 0..{n_layers - 1}"
        )
    before = "hook_resid_pre" if parts[2] == "ln1" else "hook_resid_mid"
    return f"blocks.{parts[1]}.{before}", f"{layernorm}.hook_normalized"
