"""EAP-IG's scores through torch's LayerNorm kernel equal those through the model's own."""

import contextlib
from collections.abc import Iterator

import pytest
import torch

from bracketlens import BracketTransformer
from bracketlens.data import evaluation_set
from bracketlens.discovery import scores
from bracketlens.discovery.pairs import make_pairs
from bracketlens.discovery.runs import Runs
from bracketlens.interventions.edges import split_inputs


@pytest.mark.parametrize("method", ["eap-ig", "eap"])
def test_fused_norms_move_the_scores_by_rounding_alone(
    bundled_model: BracketTransformer, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs.build(bundled_model, make_pairs(evaluation_set(400, seed=3)), "counterfactual", 0)
    rows = torch.arange(len(runs.pairs)) % 2 == 0
    fused = scores.gradient_scores(runs, rows, method)

    @contextlib.contextmanager
    def reference(model: torch.nn.Module, *, one_pass: bool = False) -> Iterator[None]:
        with split_inputs(model, one_pass=False):
            yield

    monkeypatch.setattr(scores, "split_inputs", reference)
    want = scores.gradient_scores(runs, rows, method)
    assert not torch.equal(fused, want)  # the two paths did run differently
    # float32 rounding: a few 1e-6 of the largest score, on every edge
    torch.testing.assert_close(fused, want, rtol=0, atol=1e-5 * float(want.abs().max()))
    top = want.abs().flatten().argsort(descending=True)[:50]
    assert set(fused.abs().flatten().argsort(descending=True)[:50].tolist()) == set(top.tolist())
