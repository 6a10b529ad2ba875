"""Where a variable may live: a hook, a head, a set of positions; and the pairs' activations.

Locations are every position of ``hook_resid_pre``, ``hook_resid_mid`` and
``hook_resid_post`` of each layer, of each head's ``attn.hook_z`` and of each
MLP's ``hook_post``, plus two sets of positions per hook (every position, every
position but ``[start]``, and the first two) for a variable spread along the string.
:func:`writers` gives the components that write a residual location, one step earlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from bracketlens.activations import get_activations
from bracketlens.data.tokens import OPEN
from bracketlens.errors import BracketLensError
from bracketlens.interventions.runner import StartPoint, base_reads, start_after
from bracketlens.model.config import ModelConfig
from bracketlens.model.names import act_name
from bracketlens.model.transformer import BracketTransformer

_KINDS = ("hook_resid_pre", "hook_z", "hook_resid_mid", "hook_post", "hook_resid_post")


@dataclass(frozen=True)
class Site:
    """A hook (with a head for ``attn.hook_z``): what a patch writes into."""

    hook: str
    head: int | None
    layer: int

    @property
    def label(self) -> str:
        """``"resid_post 1"``, ``"z 2.0"``, ``"mlp_post 0"``: short names for tables."""
        if self.head is not None:
            return f"z {self.layer}.{self.head}"
        kind = self.hook.split(".")[-1].removeprefix("hook_")
        return f"{'mlp_post' if kind == 'post' else kind} {self.layer}"

    @property
    def order(self) -> float:
        """Forward order, for tables and figures (resid_pre < z < resid_mid < mlp < post)."""
        step = {"hook_resid_pre": 0, "hook_z": 1, "hook_resid_mid": 2, "hook_post": 3}
        return self.layer * 10 + step.get(self.hook.split(".")[-1], 4) + (self.head or 0) / 10

    def start(self) -> StartPoint:
        """Where a run patched here starts (:func:`~bracketlens.interventions.start_after`):
        nothing before the patch is computed again.

        A site's patch moves the residual stream by a change this module can write:
        the residual itself, or a head's ``z`` or the MLP's ``post`` times its output weights.
        """
        if self.hook.rsplit(".", 1)[-1] not in _KINDS:
            raise BracketLensError(
                f"no patched run starts after {self.hook}: locations are the residual "
                "stream, a head's attn.hook_z or an MLP's mlp.hook_post"
            )
        return start_after(self.hook)

    def base_reads(self, n_layers: int) -> tuple[str, ...]:
        """The base's hooks a run patched here reads: where it starts (:meth:`start`) and
        what a local :func:`~bracketlens.interventions.run_from` takes from the base."""
        return base_reads(self.start(), n_layers)

    def width(self, cfg: ModelConfig) -> int:
        """The dimension a subspace of this site lives in."""
        if self.head is not None:
            return cfg.d_head
        return cfg.d_mlp if self.hook.endswith("mlp.hook_post") else cfg.d_model


@dataclass(frozen=True)
class Location:
    """A site and the positions patched there (all at once)."""

    site: Site
    positions: tuple[int, ...]

    @property
    def label(self) -> str:
        p = self.positions
        where = ",".join(map(str, p)) if len(p) <= 2 else f"{p[0]}..{p[-1]}"
        return f"{self.site.label} @ {where}"


def sites(cfg: ModelConfig) -> list[Site]:
    """Every screened hook, in forward order."""
    out: list[Site] = []
    for layer in range(cfg.n_layers):
        out.append(Site(act_name("resid_pre", layer), None, layer))
        out += [Site(act_name("z", layer), h, layer) for h in range(cfg.n_heads)]
        out.append(Site(act_name("resid_mid", layer), None, layer))
        out.append(Site(act_name("post", layer), None, layer))
        out.append(Site(act_name("resid_post", layer), None, layer))
    return out


def position_sets(width: int, only: int | None = None) -> list[tuple[int, ...]]:
    """Single positions ``0..width-1`` and three spread sets; just ``(only,)`` when given.

    The sets: every position, every position but ``[start]``, and ``[start]`` with
    the first paren (where the class is read and where the course's model keeps
    the total elevation: a variable may be held at both).
    """
    if only is not None:
        return [(only,)]
    singles = [(p,) for p in range(width)]
    return [*singles, tuple(range(width)), tuple(range(1, width)), (0, 1)]


@dataclass(frozen=True)
class PairActivations:
    """What patched runs read: the bases' and the sources' activations at each hook.

    ``base`` holds every patched hook and every hook a patched run reads from the
    base (:meth:`Site.base_reads`); ``source`` the patched hooks.
    """

    base_tokens: Tensor  # [pairs, width]
    base: dict[str, Tensor]  # hook -> [pairs, width, ...]
    source: dict[str, Tensor]  # hook -> [pairs, width, ...]
    base_logits: Float[Tensor, "pairs 2"]
    lengths: np.ndarray  # parens per pair (base and source alike)


def pair_activations(
    model: BracketTransformer,
    tokens: Tensor,
    base: np.ndarray,
    source: np.ndarray,
    sites: Sequence[Site],
) -> PairActivations:
    """One pass over the strings the pairs use, each string once, caching only what
    patching at ``sites`` reads; the bases' logits come from the latest residual kept.

    A string is a base or a source of many pairs: its activations are computed once
    and gathered for each pair.
    """
    lengths = (tokens[torch.as_tensor(base)] >= OPEN).sum(-1).numpy()
    width = int(lengths.max()) + 2 if len(lengths) else 2
    if not len(base):
        empty = tokens[:0, :width]
        return PairActivations(empty, {}, {}, torch.zeros(0, 2), lengths)
    rows, inverse = np.unique(np.concatenate([base, source]), return_inverse=True)
    of_base = torch.as_tensor(inverse.ravel()[: len(base)])  # each pair's row in `strings`
    of_source = torch.as_tensor(inverse.ravel()[len(base) :])
    bases, base_row = torch.unique(of_base, return_inverse=True)  # the rows that are a base
    strings = tokens[torch.as_tensor(rows), :width]
    starts = {hook: (layer, mid) for hook, layer, mid in (site.start() for site in sites)}
    patched = list(dict.fromkeys(site.hook for site in sites))
    reads = [hook for site in sites for hook in site.base_reads(model.cfg.n_layers)]
    kept = get_activations(model, strings, list(dict.fromkeys([*patched, *reads])), stop_early=True)
    with torch.no_grad():  # from the latest residual kept: no third pass
        if starts:
            hook, (layer, mid) = max(starts.items(), key=lambda item: item[1])
            logits = model.forward_from(layer, kept[hook][bases], strings[bases], mid=mid,
                                        class_only=True)[:, 0]  # fmt: skip
        else:
            logits = model.class_logits(strings[bases])
    return PairActivations(
        strings[of_base],
        {hook: value[of_base] for hook, value in kept.items()},
        {hook: kept[hook][of_source] for hook in patched},
        logits[base_row],
        lengths,
    )


def writers(location: Location, cfg: ModelConfig) -> list[Location]:
    """The components of the block that writes ``location``'s residual stream, at the
    same positions: the heads of layer ``L`` for ``resid_mid L``; the heads, the residual
    after the attention and the MLP of layer ``L`` for ``resid_post L`` (which is
    ``resid_pre L+1``). None for a head, an MLP or the embedding.

    A variable that passes in the residual stream passes, as often, one step earlier, in
    the component that wrote it there. The residual stream after the attention at more
    than two positions is left out: a whole-vector patch there is the whole run.
    """
    kind = location.site.hook.rsplit(".", 1)[-1]
    layer = location.site.layer - (kind == "hook_resid_pre")
    if kind not in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post") or layer < 0:
        return []
    here = [Site(act_name("z", layer), h, layer) for h in range(cfg.n_heads)]
    if kind != "hook_resid_mid":
        if len(location.positions) <= 2:
            here.append(Site(act_name("resid_mid", layer), None, layer))
        here.append(Site(act_name("post", layer), None, layer))
    return [Location(site, location.positions) for site in here]
