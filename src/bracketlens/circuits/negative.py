"""The negative head: where it looks, and what feeds it.

Reading right to left, a string fails the negative test where some suffix has
more ``(`` than ``)``. If a head detects that, its attention from position 0
should concentrate on those positions, beyond what uniform attention over the
parens would put there (:func:`negative_head_attention`). What it reads there
comes from the components before it (:func:`negative_feeders`).
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor

from bracketlens.attribution.components import ComponentStack
from bracketlens.attribution.directions import unbalanced_direction_pre_ln
from bracketlens.circuits.heads import attention_patterns, check_head, ov_matrix
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import OPEN
from bracketlens.data.truth import FailureGroup
from bracketlens.errors import BracketLensError
from bracketlens.model.predict import DEFAULT_BATCH
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes.feeders import FeederSums, gather_feeders, wrong_way_positions
from bracketlens.stats import Estimate, bootstrap


@dataclass(frozen=True)
class NegativeAttention:
    """Attention of one head from position 0 on strings that go negative.

    Attributes:
        head: ``"L.H"``.
        on_wrong_way: attention mass on the wrong-way positions, per string (mean, CI).
        uniform_baseline: the share of parens that are wrong-way positions (what
            uniform attention over the parens would give).
    """

    head: str
    on_wrong_way: Estimate
    uniform_baseline: Estimate

    @property
    def lift(self) -> float:
        """How many times more attention the wrong-way positions get than uniform."""
        return self.on_wrong_way.value / max(self.uniform_baseline.value, 1e-12)

    def to_json(self) -> dict[str, object]:
        return {
            "head": self.head,
            "on_wrong_way_positions": self.on_wrong_way.to_dict(),
            "uniform_baseline": self.uniform_baseline.to_dict(),
            "lift": round(self.lift, 6),
        }


def negative_head_attention(
    model: BracketTransformer,
    data: BracketDataset,
    layer: int,
    head: int,
    rows: Float[Tensor, "batch seqK"] | None = None,
) -> NegativeAttention:
    """Attention from position 0 to wrong-way positions, on the strings that go negative.

    Args:
        rows: the head's attention row from query 0 on every string of ``data``, if
            a pass already kept it (:class:`bracketlens.passes.Observation`).
    """
    check_head(model, layer, head)
    goes_negative = data.failure_types.negative
    negative = data[goes_negative]
    if len(negative) == 0:
        raise BracketLensError("no string of the sample goes negative; use a larger sample")
    if rows is None:
        row = attention_patterns(model, negative.tokens, layer, head)[:, 0]  # [batch, key]
    else:
        row = rows[goes_negative, : negative.tokens.shape[1]]
    wrong = wrong_way_positions(negative.tokens)
    n_parens = (negative.tokens >= OPEN).sum(-1).clamp(min=1)
    return NegativeAttention(
        head=f"{layer}.{head}",
        on_wrong_way=bootstrap((row * wrong).sum(-1).numpy()),
        uniform_baseline=bootstrap((wrong.sum(-1) / n_parens).numpy()),
    )


@dataclass(frozen=True)
class NegativeFeeders:
    """What each earlier component feeds the negative head, in the unbalanced direction.

    The head's output at position 0 is ``sum_k A[0, k] OV(LN1(resid_k))``. With a
    linear fit of its layer's ``ln1`` (pooled over the paren positions: the head reads
    many), each component's share is ``sum_k A[0, k] (component_k . d)`` with ``d``
    the unbalanced direction pulled back through the fit and the head's OV matrix:
    the pre-2.0 analysis of the course, summed over the positions the head reads.

    Attributes:
        head: ``"L.H"``.
        direction: the head's input direction ``d`` in the residual stream.
        ln_fit_r2: r^2 of the pooled ``ln1`` fit over the paren positions.
        components: ``[component, batch]``, centred on balanced strings.
        from_wrong_way: ``[component, batch]``, the part read from wrong-way positions
            (uncentred; 0 for strings that never go negative).
    """

    head: str
    direction: Float[Tensor, " d_model"]
    ln_fit_r2: float
    components: ComponentStack
    from_wrong_way: Float[Tensor, "component batch"]

    def to_json(self, groups: Int[Tensor, " batch"]) -> dict[str, object]:
        """Medians per failure group (``groups``: each string's failure group)."""
        wrong = self.from_wrong_way[:, groups == FailureGroup.NEGATIVE_ONLY]
        return {
            "head": self.head,
            "ln1_fit_r2_paren_positions": round(self.ln_fit_r2, 6),
            "median_by_group": {
                label: {g: round(v, 6) for g, v in by_group.items()}
                for label, by_group in self.group_medians(groups).items()
            },
            "median_from_wrong_way_positions_just_negative": {
                label: round(float(wrong[i].median()), 6) if wrong.shape[1] else None
                for i, label in enumerate(self.components.labels)
            },
        }

    def group_medians(self, groups: Int[Tensor, " batch"]) -> dict[str, dict[str, float]]:
        """Median contribution of each component per failure group: label -> group -> value."""
        out: dict[str, dict[str, float]] = {}
        for i, label in enumerate(self.components.labels):
            values = self.components.values[i]
            out[label] = {
                g.label: float(values[groups == g].median())
                for g in FailureGroup
                if (groups == g).any()
            }
        return out


def negative_feeders(
    model: BracketTransformer,
    data: BracketDataset,
    layer: int,
    head: int,
    output_direction: Float[Tensor, " d_model"] | None = None,
    batch_size: int = DEFAULT_BATCH,
    sums: FeederSums | None = None,
) -> NegativeFeeders:
    """The components before ``layer`` that feed head ``layer.head``, per string.

    Args:
        output_direction: the direction the head's output is read in; by default the
            unbalanced direction before the final LayerNorm, fitted on ``data``.
        sums: what a pass over ``data`` already gathered for this head (one more pass
            over ``data`` otherwise).
    """
    check_head(model, layer, head)
    if not data.labels.any():
        raise BracketLensError("centring the feeders needs balanced strings in the sample")
    if output_direction is None:
        output_direction = unbalanced_direction_pre_ln(model, data.tokens)
    if sums is None:
        sums = gather_feeders(model, data, layer, head, batch_size)
    if (sums.layer, sums.head) != (layer, head):
        raise BracketLensError(
            f"the pass gathered head {sums.layer}.{sums.head}, not {layer}.{head}"
        )
    fit = sums.ln_fit()
    d = fit.pull_back(ov_matrix(model, layer, head) @ output_direction.detach().float())
    through = sums.projected(model, d, 0)
    return NegativeFeeders(
        head=f"{layer}.{head}",
        direction=d,
        ln_fit_r2=fit.r2,
        components=through.centred(data.labels),
        from_wrong_way=sums.projected(model, d, 1).values,
    )
