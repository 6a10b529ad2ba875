"""explain's results on disk, keyed by everything that determines one, shared by the commands.

An explanation depends only on the model's weights, the strings and their labels, the
seed, the search's settings, the causal models tested (with the guards they must clear)
and the code that computes it. :func:`explain_key` is a SHA-256 of all of these, so a
stored result is reused only where computing it again would give the same one. The store
is a folder (:func:`store_dir`) of ``<key>.json`` files, each written atomically; a
problem with it never fails a command: it is said in one warning and the result computed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bracketlens.algorithms.conclude import hypotheses
from bracketlens.algorithms.explain import explain
from bracketlens.algorithms.record import RecordError, from_record, to_record
from bracketlens.algorithms.result import Explanation
from bracketlens.algorithms.search import Search
from bracketlens.atomic import atomic_write_text
from bracketlens.data.dataset import BracketDataset
from bracketlens.errors import BracketLensError
from bracketlens.model.transformer import BracketTransformer

ENV = "BRACKETLENS_CACHE_DIR"  # overrides the folder
SCHEMA = 1  # the entry's layout; an entry of another is computed again


class StoreWarning(UserWarning):
    """The store could not be read or written; the result was computed instead."""


def store_dir() -> Path:
    """``$BRACKETLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/bracketlens/explain`` (default
    ``~/.cache/bracketlens/explain``)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "bracketlens" / "explain"


def search_fields(search: Search, *, probes: bool = True) -> dict[str, object]:
    """What sets explain's result beside the model, the strings and the seed: the search's
    settings and the models and guards tested (:func:`.conclude.hypotheses`).

    ``probes=False`` leaves out the probe map's switch, for a result that does not hold
    the map (a sweep's row). Raises :class:`BracketLensError` for a restricted search.
    """
    settings = search.settings()
    if not probes:
        settings = {k: v for k, v in settings.items() if k != "probes"}
    return {"search": settings, "hypotheses": hypotheses()}


def weights_digest(model: BracketTransformer) -> str:
    """SHA-256 of the model's configuration and every tensor of its state dict."""
    digest = hashlib.sha256(json.dumps(asdict(model.cfg), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_digest(data: BracketDataset) -> str:
    """SHA-256 of the strings' tokens and their labels."""
    digest = hashlib.sha256(f"{tuple(data.tokens.shape)}|".encode())
    digest.update(data.tokens.to(torch.int64).contiguous().numpy().tobytes())
    digest.update(data.labels.to(torch.uint8).contiguous().numpy().tobytes())
    return digest.hexdigest()


@functools.cache
def code_digest() -> str:
    """The package's version and a SHA-256 of its Python sources: other code, other key."""
    from bracketlens import __version__

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def explain_key(model: BracketTransformer, data: BracketDataset, seed: int, search: Search) -> str:
    """The SHA-256 (hex) of everything that determines ``explain(model, data, seed, search)``."""
    fields = {
        "weights": weights_digest(model),
        "data": data_digest(data),
        "seed": seed,
        **search_fields(search),
        "code": code_digest(),
        "device": next(model.parameters()).device.type,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ExplainStore:
    """A folder of explain's results, one ``<key>.json`` per key."""

    root: Path

    def path(self, key: str) -> Path:
        """Where the result of ``key`` is stored."""
        return self.root / f"{key}.json"

    def read(self, key: str) -> Explanation | None:
        """The stored result of ``key`` (its ``stored_at`` set), or None: absent or damaged
        (said in a warning).

        Raises:
            OSError: the folder or the entry cannot be read.
        """
        path = self.path(key)
        found = read_entry(path, {"schema": SCHEMA, "key": key}, "explanation", from_record,
                           "explain result")  # fmt: skip
        return None if found is None else replace(found, stored_at=str(path))

    def write(self, key: str, explanation: Explanation) -> Path | None:
        """Store ``explanation`` under ``key``; None (and a warning) where it cannot."""
        entry = {
            "schema": SCHEMA,
            "key": key,
            "explanation": explanation.to_json(),
            "record": to_record(replace(explanation, stored_at=None)),
        }
        return write_entry(self.path(key), entry, "explain result")


def read_entry(
    path: Path,
    expected: dict[str, object],
    payload: str,
    rebuild: Callable[[object], Any],
    what: str,
) -> Any:
    """The value an entry written by :func:`write_entry` holds, or None: absent, or damaged
    (one warning naming ``what``).

    The entry's ``expected`` fields (schema, key, ...) must match; ``rebuild`` turns its
    ``record`` into the value (:class:`RecordError` where it cannot), whose ``to_json()``
    must give back the entry's ``payload`` field, the JSON the commands print.

    Raises:
        OSError: the folder or the entry cannot be read.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        entry = json.loads(text)
        if any(entry.get(k) != v for k, v in expected.items()):
            *names, last = expected
            raise RecordError(f"its {', '.join(names)} or {last} is not this one's")
        found = rebuild(entry["record"])
        if _dumped(found.to_json()) != _dumped(entry[payload]):
            raise RecordError("its record does not give its JSON")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        _warn(f"the stored {what} {path} is damaged ({e}); computing it")
        return None
    return found


def write_entry(path: Path, entry: dict[str, object], what: str) -> Path | None:
    """Write ``entry`` as JSON to ``path`` atomically (its folder made); None, and one
    warning naming ``what``, where it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entry))
    except OSError as e:
        _warn(f"cannot store the {what} in {path.parent} ({e}); it is not kept")
        return None
    return path


def stored_explain(
    model: BracketTransformer,
    data: BracketDataset,
    seed: int,
    search: Search,
    store: ExplainStore | None,
) -> Explanation:
    """``explain(model, data, seed, search=search)``, reused from ``store`` where it holds
    the result (then its ``stored_at`` says where), and stored there when computed.

    ``store=None`` neither reads nor writes. A restricted search has no key: it is computed.
    """
    if store is None:
        return explain(model, data, seed=seed, search=search)
    try:
        key = explain_key(model, data, seed, search)
    except BracketLensError:  # a restricted search has no settings, so no key
        return explain(model, data, seed=seed, search=search)
    try:
        found = store.read(key)
    except OSError as e:  # one warning, and no write to a store that cannot be read
        _warn(f"cannot read explain's result store {store.root} ({e}); computing the result")
        return explain(model, data, seed=seed, search=search)
    if found is not None:
        return found
    result = explain(model, data, seed=seed, search=search)
    store.write(key, result)
    return result


def _dumped(obj: object) -> str:
    """JSON text to compare two results by (NaN equals NaN here, unlike in Python)."""
    return json.dumps(obj, sort_keys=True)


def _warn(message: str) -> None:
    warnings.warn(message, StoreWarning, stacklevel=3)


def reuse_note(explanation: Explanation) -> str | None:
    """One sentence saying the result came from the store, and which file; None if computed."""
    if explanation.stored_at is None:
        return None
    return (
        "Reused explain's result for these weights, data and search, stored "
        f"{explanation.stored_at} (--no-cache computes it again)."
    )
