"""Longer fits where they decide the verdict: the rotations of the best models' variables.

The first pass fits every rotation with the same few Adam steps, enough to rank
locations but not always to converge; a guard then fails on a bound a few points
short. Refining every fit would cost the whole search again, so only the variables
of the models that will be confirmed on more test pairs (the best validation scores,
:func:`.conclude.confirmed_models`) get it: each such model's best few rotations are
fitted again from where they stopped, with more steps, and every model that has the
variable chooses again among the first fits and the refined ones, on its own
validation pairs. Nothing about the test pairs enters the choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bracketlens.algorithms.align import fit_basis
from bracketlens.algorithms.choice import Candidates, Fit, choose
from bracketlens.algorithms.confirm import trivial
from bracketlens.algorithms.locations import pair_activations
from bracketlens.algorithms.pairs import Pairs, concat
from bracketlens.beside import in_two_shares
from bracketlens.data.dataset import BracketDataset
from bracketlens.model.transformer import BracketTransformer

if TYPE_CHECKING:
    from bracketlens.algorithms.search import Search


def to_refine(found: Candidates, wanted: list[int], top: int) -> list[Fit]:
    """The rotations (not whole vectors) of the ``top`` best validation scores of each
    model in ``wanted`` (indices into the variable's models), once each."""
    picked: dict[int, None] = {}
    for j in wanted:
        scores = np.nan_to_num(np.asarray(found.fit_scores[j]), nan=-np.inf)
        ranked = [i for i in np.argsort(-scores, kind="stable") if found.fits[i][1] > 0]
        picked.update(dict.fromkeys(int(i) for i in ranked[:top]))
    return [found.fits[i] for i in picked]


def refine(
    model: BracketTransformer,
    data: BracketDataset,
    members: list[Pairs],
    found: Candidates,
    wanted: list[int],
    search: Search,
    seed: int,
) -> Candidates:
    """``found`` with the best rotations of the models ``wanted`` fitted again from where
    they stopped (``search.refine_steps`` more steps on the same train pairs), and every
    model's choice made again among all the fits."""
    starts = to_refine(found, wanted, search.refine_top)
    if not starts:
        return found
    train = concat(members).in_split("train")
    acts = pair_activations(model, data.tokens, train.base, train.source,
                            [loc.site for loc, _, _ in starts])  # fmt: skip
    refined: list[Fit] = []
    for j, (loc, dim, basis) in enumerate(starts):
        better = fit_basis(model, acts, train.label, loc, dim, steps=search.refine_steps,
                           seed=seed + 7919 * (j + 1) + dim, init=basis)  # fmt: skip
        refined.append((loc, dim, better))
    return choose(model, data, found.screen, [*found.fits, *refined], members, found.correct)


def refine_all(
    model: BracketTransformer,
    data: BracketDataset,
    shared: list[list[tuple]],
    founds: list[Candidates],
    confirmed: frozenset[str],
    search: Search,
    seed: int,
    where: str | None,
) -> list[Candidates]:
    """:func:`refine` for each shared variable of a confirmed model, in two processes where
    there are two cores (``where``: the model's device; None: one process); the other
    variables' candidates as they are.

    ``shared`` holds, for each shared variable in the order of ``founds``, explain's
    (model, variable, pairs, values, shared key) of each model that has it.
    """
    tokens = data.tokens.numpy()
    todo = []
    for i, (mine, found) in enumerate(zip(shared, founds, strict=True)):
        wanted = [j for j, d in enumerate(mine) if d[0].name in confirmed
                  and not trivial(found.chosen[j][0], d[3], tokens)]  # fmt: skip
        if wanted:
            todo.append((i, [d[2] for d in mine], wanted))

    def refine_share(share: list[tuple[int, list[Pairs], list[int]]]) -> list[Candidates]:
        return [refine(model, data, members, founds[i], wanted, search, seed)
                for i, members, wanted in share]  # fmt: skip

    out = list(founds)
    done = in_two_shares(refine_share, todo, lambda item: len(item[2]), where)
    for (i, _, _), found in zip(todo, done, strict=True):
        out[i] = found
    return out
