"""The one patched-run runner: where a run starts after what it patches, and the run from there.

The residual stream is a sum, so a run that changes one part of the model need not
compute what comes before it again. :func:`start_after` is the rule, for any hook:
a patch of the residual entering block ``L`` starts there; a patch of a head's value,
``z`` or output, of the attention output, or of ``hook_resid_mid`` starts at block
``L``'s MLP half (from the clean ``hook_resid_mid`` plus the change); a patch of the MLP
or of the block's output starts at block ``L + 1``. A patch of queries, keys or the
attention pattern moves every position's mix, so it starts at the block's input.

:func:`run_patched` runs many strings in batches with hooks, from a :class:`Start`;
:func:`run_from` is the run itself, and, given the positions a patch changed and the
base's activations, recomputes only those positions until an attention reads them.
With a :class:`Stop`, :func:`run_patched` ends short of the logits (:func:`run_until`)
and gives the residual stream there. Ablations, resampling tests, path patching,
explain's interchange interventions and the node optimum all run through these
functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple, cast

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from bracketlens.errors import BracketLensError
from bracketlens.interventions.hooks import Hook
from bracketlens.model.layers import TransformerBlock
from bracketlens.model.names import act_name
from bracketlens.model.predict import DEFAULT_BATCH, iter_batches
from bracketlens.model.transformer import BracketTransformer

# hook kind -> how a run patched there starts: at the block's input ("pre"), at its MLP
# half ("mid"), or at the next block ("next")
_STARTS = {
    **dict.fromkeys(("resid_pre", "q", "k", "attn_scores", "pattern"), "pre"),
    **dict.fromkeys(("v", "z", "result", "attn_out", "resid_mid"), "mid"),
    **dict.fromkeys(("pre", "post", "mlp_out", "resid_post"), "next"),
}


class StartPoint(NamedTuple):
    """Where a run patched at some hook starts.

    Attributes:
        hook: the hook whose clean value the run starts from (plus the patch's change).
        layer: the block the run enters (``n_layers``: after the last block).
        mid: the run enters at that block's MLP half (``hook`` is its ``hook_resid_mid``).
    """

    hook: str
    layer: int
    mid: bool


def start_after(hook: str) -> StartPoint:
    """Where a run that patches ``hook`` (a hook inside a block) starts.

    >>> start_after("blocks.2.attn.hook_z")
    StartPoint(hook='blocks.2.hook_resid_mid', layer=2, mid=True)
    >>> start_after("blocks.0.mlp.hook_post")
    StartPoint(hook='blocks.0.hook_resid_post', layer=1, mid=False)
    """
    parts = hook.split(".")
    kind = parts[-1].removeprefix("hook_")
    where = _STARTS.get(kind) if parts[0] == "blocks" and len(parts) >= 3 else None
    if where is None:
        raise BracketLensError(
            f"no patched run starts after {hook}: patch a hook inside a block (the residual "
            "stream, a head's q, k, v, z or output, the attention or MLP output)"
        )
    layer = int(parts[1])
    if where == "pre":
        return StartPoint(act_name("resid_pre", layer), layer, False)
    if where == "mid":
        return StartPoint(act_name("resid_mid", layer), layer, True)
    return StartPoint(act_name("resid_post", layer), layer + 1, False)


@dataclass(frozen=True)
class Start:
    """Where a batched patched run starts: every hook is at or after it, so the layers
    before it would compute the clean run again.

    Attributes:
        layer: the block the run starts at.
        resid: what enters it, of every string (``[strings, seq, d_model]``, e.g. a
            clean run's ``blocks.{layer}.hook_resid_pre``), or a function giving a
            batch's from its string indices and width (e.g. with an ablation applied).
        mid: ``resid`` is the block's ``hook_resid_mid``: the run starts at its MLP half.
    """

    layer: int
    resid: Tensor | Callable[[Tensor, int], Tensor]
    mid: bool = False

    @classmethod
    def after(cls, hook: str, resid: Tensor | Callable[[Tensor, int], Tensor]) -> Start:
        """The start of a run patched at ``hook``; ``resid`` is :func:`start_after`'s hook's
        value with the patch's change in it."""
        point = start_after(hook)
        return cls(point.layer, resid, point.mid)

    def batch(self, rows: Tensor, width: int) -> Tensor:
        """The residual the strings ``rows``, trimmed to ``width``, start from."""
        if isinstance(self.resid, Tensor):
            return self.resid[rows, :width]
        return self.resid(rows, width)


class Stop(NamedTuple):
    """Where a batched patched run ends, short of the logits.

    Attributes:
        layer: the block whose input the run ends at (its ``hook_resid_pre`` fires).
        mid: the run ends after that block's attention instead, at the value its
            ``hook_resid_mid`` would see (the hook does not fire).
    """

    layer: int
    mid: bool = False


@torch.no_grad()
def run_patched(
    model: BracketTransformer,
    tokens: Int[Tensor, "batch seq"],
    hooks: Sequence[tuple[str, Hook]] = (),
    batch_size: int = DEFAULT_BATCH,
    per_batch: Callable[[Tensor], Sequence[tuple[str, Hook]]] | None = None,
    start: Start | None = None,
    stop: Stop | None = None,
) -> Float[Tensor, "batch 2"] | Float[Tensor, "batch seq d_model"]:
    """Class logits (position 0) with ``hooks`` applied; ``per_batch(rows)`` adds batch-specific ones.

    Batches are grouped by length and their padding trimmed (pad keys are masked,
    so a string's logits do not change). ``per_batch`` gets the batch's string
    indices: it is how a source with one row per string (resampling, interchange)
    is lined up with the batch being run. With ``start`` (:class:`Start`), the run
    starts there instead of at the embeddings. The last block computes position 0
    alone (``class_only``): hooks there from the attention scores on see that
    position only, the only one the class logits read. With ``stop`` (:class:`Stop`),
    the run ends there and gives the residual stream at that point instead of logits,
    ``[batch, seq, d_model]`` (zeros past each batch's trimmed width), or
    ``[batch, 1, d_model]`` after the last block's attention, which runs at position 0
    alone.
    """
    begin = (0, False) if start is None else (start.layer, start.mid)
    out = _output(model, tokens, begin, stop)
    for rows, batch in iter_batches(tokens, batch_size):
        extra = list(per_batch(rows)) if per_batch is not None else []
        # no hooks: no context, whose exit resets every hook point (a cost per batch)
        with model.hooks(fwd_hooks=[*hooks, *extra]) if hooks or extra else nullcontext():
            if start is None and stop is None:
                out[rows] = model.class_logits(batch)
                continue
            resid = (
                model.embed_tokens(batch) if start is None else start.batch(rows, batch.shape[1])
            )
            if stop is None:
                out[rows] = run_from(model, begin[0], resid, batch, mid=begin[1])
            else:
                ended = run_until(model, begin[0], resid, batch, stop, mid=begin[1])
                out[rows, : ended.shape[1]] = ended
    return out


def _output(
    model: BracketTransformer, tokens: Tensor, begin: tuple[int, bool], stop: Stop | None
) -> Tensor:
    """What :func:`run_patched` fills: the class logits, or the residual stream at ``stop``."""
    dtype = next(model.parameters()).dtype
    if stop is None:
        return torch.empty(len(tokens), 2, dtype=dtype)
    if not (begin <= tuple(stop) and 0 <= stop.layer < model.cfg.n_layers):
        raise BracketLensError(
            f"a run starting at {begin} cannot stop at {tuple(stop)}: stop at a block's input "
            "or after its attention, at or after the start"
        )
    at_0 = stop.mid and stop.layer == model.cfg.n_layers - 1  # position 0 alone
    return torch.zeros(len(tokens), 1 if at_0 else tokens.shape[1], model.cfg.d_model, dtype=dtype)


def run_until(
    model: BracketTransformer,
    layer: int,
    resid: Float[Tensor, "batch pos d_model"],
    tokens: Int[Tensor, "batch pos"],
    stop: Stop,
    *,
    mid: bool = False,
) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream at ``stop`` of a run entering block ``layer`` (its MLP half with
    ``mid``) with ``resid``; after the last block's attention, at position 0 alone."""
    if mid and (layer, mid) == tuple(stop):
        return resid  # it starts where it stops: nothing runs
    resid = model.run_blocks(resid, tokens, layer, stop.layer, mid=mid, class_only=True)
    block = cast(TransformerBlock, model.blocks[stop.layer])
    if not stop.mid:
        return block.hook_resid_pre(resid)
    pad = tokens == model.cfg.pad_token_id
    return block.first_half(resid, pad, 1 if stop.layer == model.cfg.n_layers - 1 else None)


def run_from(
    model: BracketTransformer,
    layer: int,
    resid: Float[Tensor, "batch pos d_model"],
    tokens: Int[Tensor, "batch pos"],
    *,
    mid: bool = False,
    where: Bool[Tensor, "batch pos"] | None = None,
    base: Mapping[str, Tensor] | None = None,
) -> Float[Tensor, "batch 2"]:
    """Class logits of a run entering block ``layer`` (its MLP half with ``mid``) with ``resid``.

    Given ``where``, ``resid`` differs from the base run's only at those positions, and
    ``base`` holds the base's activations a local run reads (:func:`base_reads`): until
    an attention reads them, only those positions are recomputed. An MLP half runs
    there alone (the block's output elsewhere is the base's), and the next block's
    queries, keys and values are computed there alone (the base's elsewhere). Without
    ``where`` every position runs. The last block computes position 0 alone.
    """
    last = model.cfg.n_layers - 1
    if where is None or base is None or layer > last or (mid and layer == last):
        return model.forward_from(layer, resid, tokens, mid=mid, class_only=True)[:, 0]
    if mid:  # the MLP works position by position: only the patched positions change
        block = cast(TransformerBlock, model.blocks[layer])
        post = base[act_name("resid_post", layer)].clone()
        post[where] = block.second_half(resid[where])
        resid, layer = post, layer + 1
    block = cast(TransformerBlock, model.blocks[layer])
    q, k, v = (base[act_name(c, layer)].clone() for c in "qkv")
    q[where], k[where], v[where] = block.attn.project(block.ln1(resid[where]))
    queries = slice(0, 1) if layer == last else slice(None)  # the class is read at 0 alone
    pad = tokens == model.cfg.pad_token_id
    out = block.second_half(resid[:, queries] + block.attn.attend(q[:, queries], k, v, pad))
    return model.forward_from(layer + 1, out, tokens, class_only=True)[:, 0]


def base_reads(point: StartPoint, n_layers: int) -> tuple[str, ...]:
    """The base's hooks a local :func:`run_from` from ``point`` reads, ``point.hook`` first:
    the block's output (from an MLP half) and the queries, keys and values of the block
    whose attention comes next; only the start past the last attention."""
    hook, layer, mid = point
    if mid and layer < n_layers - 1:
        return hook, act_name("resid_post", layer), *(act_name(c, layer + 1) for c in "qkv")
    if not mid and layer < n_layers:
        return hook, *(act_name(c, layer) for c in "qkv")
    return (hook,)
