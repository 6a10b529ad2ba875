"""An :class:`~.result.Explanation` as JSON that rebuilds it whole, arrays and bases included.

``Explanation.to_json`` is what users read: it rounds the screens and leaves out each
test pair's outcome, so it cannot give the object back. :func:`to_record` keeps every
field (arrays and tensors as their bytes, in base64), and :func:`from_record` rebuilds
the object from it, refusing a record that does not fit the classes as they are.
:func:`encode` and :func:`decode` do the same for records of other frozen dataclasses
(the report's discovery stage), each reader naming the classes it may construct.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import numpy as np
import torch

from bracketlens.algorithms.guards import Guard
from bracketlens.algorithms.locations import Location, Site
from bracketlens.algorithms.probes import ProbeMap
from bracketlens.algorithms.result import Alignment, Explanation, ModelScore, ScreenMap
from bracketlens.stats import Estimate

# the only classes a record may name: reading one constructs nothing else
CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Explanation,
        ModelScore,
        Alignment,
        ScreenMap,
        ProbeMap,
        Guard,
        Location,
        Site,
        Estimate,
    )
}


class RecordError(ValueError):
    """A record that does not rebuild its value (damaged, or of other classes)."""


def to_record(explanation: Explanation) -> dict[str, Any]:
    """Every field of ``explanation``, as JSON-ready values that :func:`from_record` reads."""
    encoded = encode(explanation, CLASSES)
    assert isinstance(encoded, dict)
    return encoded


def from_record(record: object) -> Explanation:
    """The explanation :func:`to_record` wrote.

    Raises:
        RecordError: the record names another class or field, or holds a bad value.
    """
    found = decode(record, CLASSES, "an explanation record")
    if not isinstance(found, Explanation):
        raise RecordError(f"not an explanation record: a {type(found).__name__}")
    return found


def decode(record: object, classes: dict[str, type], what: str) -> object:
    """The value :func:`encode` wrote, constructing only ``classes`` (``what`` names the
    record in the error).

    Raises:
        RecordError: the record names another class or field, or holds a bad value.
    """
    try:
        return _decode(record, classes)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RecordError(f"not {what}: {e}") from None


def encode(value: object, classes: dict[str, type]) -> object:
    """``value`` as JSON-ready values; its dataclasses must be ``classes`` (else TypeError)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if classes.get(name) is not type(value):
            raise TypeError(f"{name} is not a class this record holds")
        fields = {
            f.name: encode(getattr(value, f.name), classes) for f in dataclasses.fields(value)
        }
        return {"class": name, "fields": fields}
    if isinstance(value, np.ndarray):
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
        return {"array": value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().numpy()
        return {"tensor": array.dtype.str, "shape": list(array.shape),
                "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()}  # fmt: skip
    if isinstance(value, tuple):
        return {"tuple": [encode(v, classes) for v in value]}
    if isinstance(value, list):
        return {"list": [encode(v, classes) for v in value]}
    if isinstance(value, dict):  # keys of any type, in order
        return {"dict": [[encode(k, classes), encode(v, classes)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a record cannot hold a {type(value).__name__}")


def _decode(value: object, classes: dict[str, type]) -> object:
    if not isinstance(value, dict):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"unexpected {type(value).__name__}")
    if "class" in value:
        cls = classes[value["class"]]
        fields = value["fields"]
        expected = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) != expected:
            raise ValueError(f"{value['class']} has other fields than these")
        return cls(**{k: _decode(v, classes) for k, v in fields.items()})
    if "array" in value or "tensor" in value:
        dtype = np.dtype(value.get("array") or value["tensor"])
        shape = tuple(int(n) for n in value["shape"])
        array = np.frombuffer(base64.b64decode(value["data"]), dtype=dtype).reshape(shape).copy()
        return array if "array" in value else torch.from_numpy(array)
    if "tuple" in value:
        return tuple(_decode(v, classes) for v in value["tuple"])
    if "list" in value:
        return [_decode(v, classes) for v in value["list"]]
    return {_decode(k, classes): _decode(v, classes) for k, v in value["dict"]}
