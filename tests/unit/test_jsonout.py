"""Strict JSON: non-finite numbers become null with a reason, never a bare NaN."""

import json
import math

import numpy as np
import pytest

from bracketlens.jsonout import has_nonfinite, strict, strict_dumps


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_nan_in_an_object_becomes_null_with_a_reason():
    text = strict_dumps({"accuracy": float("nan"), "n": 0, "rows": [{"p": math.inf}]})
    data = json.loads(text, parse_constant=_no_constants)
    assert data["accuracy"] is None and "NaN" in data["accuracy_null_reason"]
    assert data["n"] == 0 and "accuracy" in data and "n_null_reason" not in data
    assert data["rows"][0]["p"] is None and data["rows"][0]["p_null_reason"].startswith("was inf")


def test_lists_of_numbers_name_the_bad_items():
    data = json.loads(strict_dumps({"xs": [1.0, -math.inf, float("nan")]}))
    assert data["xs"] == [1.0, None, None]
    assert "items 1 (minus infinity), 2 (NaN" in data["xs_null_reason"]


def test_numpy_scalars_and_a_taken_reason_key():
    out = strict({"a": np.float32("nan"), "a_null_reason": "mine", "b": np.int64(3)})
    assert out == {"a": None, "a_null_reason": "mine", "b": 3}
    assert type(out["b"]) is int


def test_finite_data_is_unchanged():
    data = {"a": [1, 2.5, True, None, "x"], "b": {"c": -0.0}}
    assert json.loads(strict_dumps(data)) == data


@pytest.mark.parametrize(
    ("text", "found"),
    [('{"a": NaN}', True), ("[Infinity]", True), ('{"a": 1}', False), ("not json", False)],
)
def test_has_nonfinite(text, found):
    assert has_nonfinite(text) is found
