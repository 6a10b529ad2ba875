"""Scoring candidates under a hard evaluation budget, each string at most once."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from bracketlens.adversarial.families import unique
from bracketlens.adversarial.result import Finding, StageSummary, rank_key
from bracketlens.data.tokens import tokenize
from bracketlens.data.truth import is_balanced_tokens
from bracketlens.model.predict import DEFAULT_BATCH, predict_logits
from bracketlens.model.transformer import BracketTransformer


@dataclass
class _Tally:
    """Running counts of one stage (mutable while the search runs)."""

    evaluations: int = 0
    n_correct: int = 0
    best_unbalanced: Finding | None = None
    best_balanced: Finding | None = None

    def add(self, finding: Finding) -> None:
        self.evaluations += 1
        self.n_correct += finding.correct
        if finding.label:
            if self.best_balanced is None or rank_key(finding) < rank_key(self.best_balanced):
                self.best_balanced = finding
        elif self.best_unbalanced is None or rank_key(finding) < rank_key(self.best_unbalanced):
            self.best_unbalanced = finding


class Scorer:
    """Scores strings with a model, once each, never past the budget.

    Every string scored costs one evaluation; strings already scored are skipped
    for free. Each result is labelled by the vectorised ground-truth checker on
    the very tokens the model read, so no finding rests on an assumed label.

    Args:
        model: the classifier under attack.
        budget: the most strings this scorer will ever evaluate.
        stages: stage names to report in this order, even those that end up scoring nothing.
        batch_size: strings per forward pass.
        progress: show a progress bar of evaluations used (on stderr).
    """

    def __init__(
        self,
        model: BracketTransformer,
        budget: int,
        *,
        stages: Sequence[str] = (),
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
    ) -> None:
        self.model = model
        self.budget = budget
        self.batch_size = batch_size
        self._seen: dict[str, Finding] = {}
        self._tallies: dict[str, _Tally] = {name: _Tally() for name in stages}
        self._bar = tqdm(total=budget, disable=not progress, desc="attack", unit="eval")

    @property
    def used(self) -> int:
        """Evaluations spent so far."""
        return len(self._seen)

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - self.used

    def score(self, strings: Iterable[str], stage: str, limit: int | None = None) -> list[Finding]:
        """Score the strings not seen before, in order, as far as the budget allows.

        Args:
            strings: candidates; repeats and strings scored earlier are skipped.
            stage: the stage charged for these evaluations.
            limit: at most this many new strings (on top of the overall budget).

        Returns:
            The findings of the newly scored strings, in candidate order.
        """
        room = self.remaining if limit is None else max(0, min(limit, self.remaining))
        tally = self._tallies.setdefault(stage, _Tally())
        new = [s for s in unique(strings) if s not in self._seen][:room]
        if not new:
            return []
        tokens = tokenize(new)
        labels, diffs = self._evaluate(tokens)
        found = [
            Finding(string=s, label=bool(lab), logit_diff=float(d), stage=stage)
            for s, lab, d in zip(new, labels.tolist(), diffs.tolist(), strict=True)
        ]
        for f in found:
            self._seen[f.string] = f
            tally.add(f)
        self._bar.update(len(found))
        return found

    def _evaluate(self, tokens: Tensor) -> tuple[Bool[Tensor, " batch"], Float[Tensor, " batch"]]:
        """Ground-truth labels and log-odds of balanced, for a batch of token rows."""
        logits = predict_logits(self.model, tokens, self.batch_size).double()
        # subtract in float64: the logits are float32, their difference need not lose more
        return is_balanced_tokens(tokens), logits[:, 1] - logits[:, 0]

    def best(self, balanced: bool, k: int) -> list[Finding]:
        """The ``k`` wrongest findings of one label so far, wrongest first."""
        return heapq.nsmallest(
            k, (f for f in self._seen.values() if f.label == balanced), key=rank_key
        )

    def summaries(self) -> tuple[StageSummary, ...]:
        """One summary per stage, in the order the stages first scored."""
        return tuple(
            StageSummary(name, t.evaluations, t.n_correct, t.best_unbalanced, t.best_balanced)
            for name, t in self._tallies.items()
        )

    def close(self) -> None:
        """Close the progress bar."""
        self._bar.close()
