"""Linear probes of the grammar's variables at every single-position site: the probe map.

For each hook that explain screens (:func:`.locations.sites`) and each position, a
ridge regression from that position's activation predicts each variable, fitted on
70% of the strings and scored on the other 30% (split by string, so no string is
both fitted and scored):

- **integers** (the grammar's quantities, each also divided by the string's length,
  which is what an attention average computes; the prefix and suffix elevation at the
  site's own position): R² on the held-out strings;
- **booleans** (the grammar's atoms): balanced accuracy on the held-out strings, the
  prediction thresholded half-way between the two classes' mean predictions on the
  fitted strings (least squares on a 0/1 target gives Fisher's discriminant direction).

A cell is NaN where too few strings reach the position (or a boolean has too few of
either class there) to fit and score it. The map says what is linearly *decodable*
where; interchange interventions say what is *used*.

>>> probes = probe_map(load_model(), evaluation_set(2000, seed=0))   # doctest: +SKIP
>>> probes.best("prefix_negative")                                   # doctest: +SKIP
('resid_pre 2', 1, 0.98)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bracketlens.activations import get_activations
from bracketlens.algorithms.grammar import (
    CANDIDATE_ATOMS,
    QUANTITIES,
    prefix_elevations,
    suffix_elevations,
)
from bracketlens.algorithms.locations import Site, sites
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import OPEN, PAD
from bracketlens.model.transformer import BracketTransformer

PROBE_STRINGS = 2000  # strings probed (a random sample of the data)
HELD_OUT = 0.3  # share of the strings that score the probes
RIDGE = 1e-2  # ridge penalty, relative to the mean eigenvalue of the activations' covariance
MIN_FIT = 100  # strings a position needs among the fitted ones
MIN_SCORED = 50  # and among the held-out ones; a boolean needs MIN_CLASS of each class in each
MIN_CLASS = 20

R2 = "r2"
BALANCED_ACCURACY = "balanced_accuracy"


@dataclass(frozen=True)
class ProbeMap:
    """Held-out probe scores of every variable at every (hook, position)."""

    variables: tuple[str, ...]
    kinds: tuple[str, ...]  # per variable: R2 or BALANCED_ACCURACY
    sites: tuple[str, ...]  # hook labels, forward order (:attr:`.locations.Site.label`)
    scores: np.ndarray = field(repr=False)  # [variables, sites, positions]; NaN: too few
    n_strings: int = 0

    def best(self, variable: str) -> tuple[str, int, float] | None:
        """Where ``variable`` decodes best: (hook label, position, score); None if nowhere."""
        grid = self.scores[self.variables.index(variable)]
        if np.isnan(grid).all():
            return None
        s, p = np.unravel_index(np.nanargmax(grid), grid.shape)
        return self.sites[s], int(p), float(grid[s, p])

    def by_site(self, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Each (variable, hook)'s best score over the positions from ``first`` on, and that
        position (-1: none scored)."""
        filled = np.where(np.isnan(self.scores[..., first:]), -np.inf, self.scores[..., first:])
        position = filled.argmax(-1)
        best = np.take_along_axis(filled, position[..., None], -1)[..., 0]
        empty = np.isneginf(best)
        return np.where(empty, np.nan, best), np.where(empty, -1, position + first)

    def to_json(self) -> dict[str, object]:
        best, position = self.by_site()
        return {
            "variables": list(self.variables),
            "kinds": list(self.kinds),
            "sites": list(self.sites),
            "best": [[None if np.isnan(x) else round(float(x), 3) for x in row] for row in best],
            "best_position": position.tolist(),
            "n_strings": self.n_strings,
            "held_out": HELD_OUT,
        }


def probe_map(
    model: BracketTransformer, data: BracketDataset, seed: int = 0, n: int = PROBE_STRINGS
) -> ProbeMap:
    """Probe every variable of :func:`probe_targets` at every single-position site.

    One forward pass over ``n`` strings drawn from ``data`` (``seed`` draws them and
    splits them into fitted and held-out strings).
    """
    rng = np.random.default_rng([seed, 0x9B0])
    take = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    tokens = data.tokens[torch.as_tensor(take)]
    width = int((tokens != PAD).sum(-1).max())
    tokens = tokens[:, :width]
    names, kinds, values = probe_targets(tokens.numpy())
    held_out = rng.random(len(take)) < HELD_OUT
    real = (tokens != PAD).numpy()
    targets = _Targets.of(values, kinds, real, held_out)
    hooks = sites(model.cfg)
    acts = get_activations(model, tokens, list(dict.fromkeys(s.hook for s in hooks)))
    scores = np.stack([targets.scores(_site_acts(acts, site)) for site in hooks], axis=1)
    return ProbeMap(names, kinds, tuple(s.label for s in hooks), scores, len(take))


def probe_targets(tokens: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """The probed variables: names, kinds and values ``[strings, positions, variables]``.

    Integers: each quantity, the non-length ones also divided by the length, and the
    prefix and suffix elevation at each position. Booleans: each atom that is neither
    constant nor the same as (or the complement of) an earlier one on these strings.
    """
    n, width = tokens.shape
    length = np.maximum((tokens >= OPEN).sum(-1), 1).astype(np.float64)
    names: list[str] = []
    columns: list[np.ndarray] = []
    for name, compute in QUANTITIES.items():
        value = compute(tokens).astype(np.float64)
        names.append(name)
        columns.append(np.broadcast_to(value[:, None], (n, width)))
        if name != "length":
            names.append(f"{name} / length")
            columns.append(np.broadcast_to((value / length)[:, None], (n, width)))
    names += ["prefix_elevation", "suffix_elevation"]
    columns += [prefix_elevations(tokens).astype(np.float64),
                suffix_elevations(tokens).astype(np.float64)]  # fmt: skip
    kinds = [R2] * len(names)
    seen: list[np.ndarray] = []
    for atom in CANDIDATE_ATOMS:
        value = atom.compute(tokens)
        if value.all() or not value.any() or any((value == s).all() or (value != s).all()
                                                 for s in seen):  # fmt: skip
            continue
        seen.append(value)
        names.append(atom.name)
        kinds.append(BALANCED_ACCURACY)
        columns.append(np.broadcast_to(value[:, None].astype(np.float64), (n, width)))
    return tuple(names), tuple(kinds), np.stack(columns, -1)


def _site_acts(acts: dict[str, torch.Tensor], site: Site) -> torch.Tensor:
    """``[positions, strings, d]`` float64 activations of one site (one head of ``z``)."""
    act = acts[site.hook]
    if site.head is not None:
        act = act[:, :, site.head]
    return act.transpose(0, 1).double()


@dataclass(frozen=True)
class _Targets:
    """The probed values, positions first, split into the fitted and the scored strings,
    with what every site's fit shares."""

    fit: torch.Tensor  # [strings fitted] indices
    scored: torch.Tensor  # [strings scored] indices
    y_fit: torch.Tensor  # [positions, fitted, variables] float64, 0 where the string ends
    y_scored: torch.Tensor  # [positions, scored, variables]
    in_fit: torch.Tensor  # [positions, fitted, 1] float64: the string reaches the position
    in_scored: torch.Tensor  # [positions, scored, 1]
    is_r2: torch.Tensor  # [variables] bool

    @classmethod
    def of(
        cls, values: np.ndarray, kinds: tuple[str, ...], real: np.ndarray, held_out: np.ndarray
    ) -> _Targets:
        """``values`` ``[strings, positions, variables]``; ``real`` ``[strings, positions]``:
        the string reaches the position; ``held_out`` ``[strings]``: scored, not fitted."""
        y = torch.from_numpy(np.ascontiguousarray(values.transpose(1, 0, 2)))
        inside = torch.from_numpy(real.T.astype(np.float64))[..., None]
        fit = torch.from_numpy(np.flatnonzero(~held_out))
        scored = torch.from_numpy(np.flatnonzero(held_out))
        return cls(fit, scored, y[:, fit] * inside[:, fit], y[:, scored], inside[:, fit],
                   inside[:, scored], torch.tensor([k == R2 for k in kinds]))  # fmt: skip

    def scores(self, x: torch.Tensor) -> np.ndarray:
        """Held-out scores ``[variables, positions]`` of ridge probes of ``x``
        (``[positions, strings, d]``), one per position."""
        xf = x[:, self.fit] * self.in_fit
        count = self.in_fit.sum(1)  # [positions, 1]
        x_mean = xf.sum(1) / count.clamp(min=1)
        y_mean = self.y_fit.sum(1) / count.clamp(min=1)
        xt = xf.transpose(1, 2)
        xy = xt @ self.y_fit  # [positions, d, variables]: sums of x over each target
        gram = xt @ xf - count[..., None] * x_mean[:, :, None] * x_mean[:, None, :]
        cross = xy - count[..., None] * x_mean[:, :, None] * y_mean[:, None]
        d = x.shape[-1]
        ridge = RIDGE * gram.diagonal(dim1=1, dim2=2).sum(-1) / d + 1e-12
        weights = torch.linalg.solve(gram + ridge[:, None, None] * torch.eye(d, dtype=x.dtype),
                                     cross)  # fmt: skip  # [positions, d, variables]
        offset = y_mean - (x_mean[:, None] @ weights)[:, 0]  # [positions, variables]
        predicted = x[:, self.scored] @ weights + offset[:, None]
        # booleans: the classes' mean predictions on the fitted strings, from the sums of x
        n_pos = self.y_fit.sum(1)
        n_neg = count - n_pos
        mean_pos = (xy * weights).sum(1) / n_pos.clamp(min=1) + offset
        mean_neg = ((xf.sum(1)[..., None] - xy) * weights).sum(1) / n_neg.clamp(min=1) + offset
        accuracy = _balanced_accuracy(self.y_scored, predicted, self.in_scored,
                                      (mean_pos + mean_neg) / 2)  # fmt: skip
        enough_classes = torch.minimum(n_pos, n_neg) >= MIN_CLASS
        score = torch.where(self.is_r2, _r2(self.y_scored, predicted, self.in_scored),
                            torch.where(enough_classes, accuracy, torch.nan))  # fmt: skip
        enough = (count[:, 0] >= MIN_FIT) & (self.in_scored.sum(1)[:, 0] >= MIN_SCORED)
        return torch.where(enough[:, None], score, torch.nan).T.numpy()


def _r2(y: torch.Tensor, predicted: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """R² ``[positions, variables]`` on the scored strings (NaN: the target is constant)."""
    count = scored.sum(1).clamp(min=1)
    mean = (scored * y).sum(1) / count
    total = (scored * (y - mean[:, None]) ** 2).sum(1)
    residual = (scored * (y - predicted) ** 2).sum(1)
    return torch.where(total > 1e-9, 1 - residual / total.clamp(min=1e-9), torch.nan)


def _balanced_accuracy(
    y: torch.Tensor, predicted: torch.Tensor, scored: torch.Tensor, threshold: torch.Tensor
) -> torch.Tensor:
    """Balanced accuracy ``[positions, variables]`` of ``predicted > threshold`` on the
    scored strings (``y`` is 0/1; NaN: too few scored strings of a class)."""
    positive, negative = y * scored, (1 - y) * scored
    said = (predicted > threshold[:, None]).double()
    n_pos, n_neg = positive.sum(1), negative.sum(1)
    hits = (said * positive).sum(1) / n_pos.clamp(min=1)
    rejections = ((1 - said) * negative).sum(1) / n_neg.clamp(min=1)
    enough = torch.minimum(n_pos, n_neg) >= MIN_CLASS
    return torch.where(enough, (hits + rejections) / 2, torch.nan)
