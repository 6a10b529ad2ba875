"""The pipeline's findings match the golden findings.json, number for number.

``golden/findings.json`` holds the numbers ``bracketlens analyze --json`` gave at
commit 9118b69 (see its ``made_by``) on the course checkpoint (first 5,000 course
strings) and the bundled model (``--n 5000``). Compared here with the pipeline at
the same sizes:

- observational numbers within 1e-6 relative, plus 2e-5 of the largest number of
  their block (e.g. every component's attribution medians), plus the JSON's rounding
  (6 decimals, attention rows 4). The block term is float32 arithmetic: the CPU's
  matrix kernels sum in a different order on another processor, and the LayerNorm
  fits amplify that. The reference was made on one machine; on an AVX-512 Xeon with
  AMX the same commit moves numbers by up to 6.3e-6 of their block's largest;
- what feeds the negative head within 1e-5 of the block's largest value: the
  pipeline weights those sums over positions before the projection, the golden file
  after it, a float32 re-association;
- role names identical, but for two that differ on purpose (:data:`CHANGED_ON_PURPOSE`);
- causal numbers inside the 95% bootstrap intervals of the golden file (where the
  interval is undefined, a ratio of vanishing gaps, the value within 1e-3 relative).

Not compared, on purpose: the localisation scores (the pipeline's come from the
float64 moment fits of the observational pass, the golden file's from sklearn fits on
float32 rows; they differ by up to 2e-4 relative) and the start-close evidence (the
pipeline measures it by ablations on the held-out strings, as every intervention is,
the golden file on the fit half).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bracketlens import evaluation_set
from bracketlens.pipeline import run
from bracketlens.stats import wilson

GOLDEN = json.loads((Path(__file__).parent / "golden" / "findings.json").read_text())

# The bundled model's tally head: the golden file's localisation computed cos(v_L, v_R)
# from a sklearn fit of layer 0's ln1 on float32 rows, whose coefficients off the rows'
# span are fitted rounding noise; v_L and v_R (an embedding, not a difference of inputs)
# read that noise and gave +0.90, so no head passed. The float64 moment fit gives -0.94,
# the number the elevation analysis reports for head 0.0.
#
# The bundled model's start-close component: the golden file names head 2.1, whose mean
# ablation raises P(balanced) on strings starting with ')'; but it raises it about as
# much on unbalanced strings starting with '(' (it is the negative head: it flags every
# failure). The start-close role needs a rise on ')...' strings at least twice that on
# unbalanced '(...' strings (the test the compiled model needs, where the tally head
# otherwise takes the role), so this model has none.
CHANGED_ON_PURPOSE = {
    ("bundled", "tally_head"): (None, "0.0"),
    ("bundled", "start_close_component"): ("head 2.1", None),
}


def leaves(x: object, path: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x


@pytest.fixture(scope="module", params=["course", "bundled"])
def case(request, course_model, course_data, bundled_model):
    if request.param == "course":
        found = run(course_model, course_data[:5000])  # what `bracketlens analyze` runs
    else:
        found = run(bundled_model, evaluation_set(5000, seed=0))
    return request.param, GOLDEN[request.param], dict(leaves(found.to_json()))


def test_role_names_are_the_same(case):
    name, golden, ours = case
    for role, location in golden["roles"].items():
        want = CHANGED_ON_PURPOSE.get((name, role), (location, location))[1]
        assert ours[f"/localisation/{role}/location"] == want, role
    neurons = [v for p, v in ours.items() if p.startswith("/localisation/mlp_neurons[")]
    assert neurons == golden["mlp_neurons"]


# Accuracy is a fraction: its interval is Wilson's, the golden file's a percentile bootstrap
# (which gives [1, 1] for a group with no mistake). Checked against the formula instead.
WILSON = re.compile(r"^/model_and_data/(accuracy|by_group/[^/]+)/ci_(low|high)$")


def test_observational_numbers_are_the_same(case):
    _, golden, ours = case
    assert golden["observational"], "the reference lists no numbers"
    scale = _block_scales(golden["observational"])
    for path, want in golden["observational"].items():
        got = ours[path]
        if WILSON.match(path):
            block = path.rsplit("/", 1)[0]
            n, value = ours[f"{block}/n"], ours[f"{block}/value"]
            interval = wilson(round(value * n), n)
            assert got == pytest.approx(interval.low if path.endswith("low") else interval.high)
            continue
        if isinstance(want, bool) or (isinstance(want, int) and "n_wrong" in path):
            assert got == want, path
            continue
        quantum = 1e-4 if "attention_from" in path else 1e-6  # the JSON's rounding
        float32 = FLOAT32_NOISE * scale.get(_block(path), 0.0)
        assert abs(got - want) <= 1e-6 * abs(want) + float32 + quantum, (path, want, got)


#: float32 re-association across CPUs, as a fraction of a block's largest number
FLOAT32_NOISE = 2e-5


def _block(path: str) -> str:
    """``/logit_attribution/components/head 0.1/...`` -> ``/logit_attribution/components``."""
    return "/".join(path.split("/")[:3])


def _block_scales(numbers: dict[str, object]) -> dict[str, float]:
    """The largest magnitude of each block's real numbers (counts left out)."""
    scale: dict[str, float] = {}
    for path, value in numbers.items():
        if isinstance(value, float):
            scale[_block(path)] = max(scale.get(_block(path), 0.0), abs(value))
    return scale


def test_negative_head_feeders_agree_to_float32_reassociation(case):
    _, golden, ours = case
    scale = max(abs(v) for v in golden["float32_sums"].values())
    for path, want in golden["float32_sums"].items():
        assert abs(ours[path] - want) <= 1e-5 * scale + 1e-6, (path, want, ours[path])


def test_causal_numbers_stay_inside_their_intervals(case):
    _, golden, ours = case
    for path, (value, low, high) in golden["causal"].items():
        got = ours[f"{path}/value"]
        if not (math.isfinite(low) and math.isfinite(high)):
            # no interval where the resamples' denominators vanish: the value itself
            assert got == pytest.approx(value, rel=1e-3), (path, value, got)
            continue
        assert low <= got <= high, (path, low, got, high)
