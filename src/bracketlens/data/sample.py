"""Is a sample big enough for the statistics it feeds? Errors below the minimum, warnings above.

The analyses split a sample in two halves (fit on one, check on the other) and
report bootstrap intervals per failure group. A half with no string of some
group cannot be analysed at all; a half with a handful gives intervals such as
"83.3% [83.3, 100]" that look confident and mean little.
"""

from __future__ import annotations

import torch

from bracketlens.data.dataset import BracketDataset
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.limits import MIN_GROUP_SAMPLE

SUGGESTED_N = 1_000  # generated strings: the rarest group (~9%) then has ~45 per half


def check_sample(data: BracketDataset, *, purpose: str, minimum: int, split_seed: int) -> list[str]:
    """Raise if ``data`` cannot feed ``purpose``; else the warnings about its size.

    Args:
        data: the sample.
        purpose: what it is for, as messages name it ("the analysis").
        minimum: the fewest strings ``purpose`` runs on.
        split_seed: the seed of :meth:`BracketDataset.split` that ``purpose`` uses.

    Raises:
        BracketLensError: fewer than ``minimum`` strings, or a failure group with no
            string in one of the two halves.
    """
    if len(data) < minimum:
        raise BracketLensError(
            f"{purpose} needs at least {minimum} strings, got {len(data)}; "
            f"use at least --n {SUGGESTED_N} (the default is better)"
        )
    halves = data.split_groups(split_seed)
    counts = torch.stack(
        [
            torch.bincount(data.failure_groups[halves == h], minlength=len(FailureGroup))
            for h in (0, 1)
        ]
    )  # [half, group]
    smallest = int(counts.min())
    half, group = divmod(int(counts.argmin()), len(FailureGroup))
    label = FailureGroup(group).label
    where = f"the {'first' if half == 0 else 'second'} half of the sample"
    if smallest == 0:
        raise BracketLensError(
            f"{purpose} needs strings of every failure group in both halves of the sample, "
            f"but {where} has no '{label}' string; use a larger or more varied sample "
            f"(e.g. --n {SUGGESTED_N})"
        )
    if smallest < MIN_GROUP_SAMPLE:
        return [
            f"{where} has only {smallest} '{label}' strings: intervals need at least "
            f"{MIN_GROUP_SAMPLE} of each failure group in each half, so these results are "
            f"unreliable; use at least --n {SUGGESTED_N}"
        ]
    return []
