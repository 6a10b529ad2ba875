"""The report's discovery stage, kept in explain's result store and read back from it.

The stage's result (:func:`.stage.report_discovery`) depends only on the model's weights,
the strings it reads (the first :data:`.stage.REPORT_STRINGS`), the seed, the threads it
runs at, the device and the code. :func:`discovery_key` is a SHA-256 of all of these, so
a stored result is reused only where the stage would compute the same one. Entries are
``<key>.json`` files in the folder of :mod:`bracketlens.algorithms.store`, beside explain's,
each written atomically; as there, a problem with the store never fails a command: it is
said in one warning and the stage computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from types import TracebackType

import torch

from bracketlens.algorithms.record import RecordError, decode, encode
from bracketlens.algorithms.store import (
    ExplainStore,
    StoreWarning,
    code_digest,
    data_digest,
    read_entry,
    weights_digest,
    write_entry,
)
from bracketlens.beside import Beside, forkable
from bracketlens.data.dataset import BracketDataset
from bracketlens.discovery import result as result_module
from bracketlens.discovery.stage import REPORT_STRINGS, ReportDiscovery, report_discovery
from bracketlens.model.transformer import BracketTransformer

SCHEMA = 1  # the entry's layout; an entry of another is computed again
KIND = "report discovery"  # what the entry holds: never an explain result's key

# the only classes an entry may name: reading one constructs nothing else
CLASSES: dict[str, type] = {
    ReportDiscovery.__name__: ReportDiscovery,
    **{
        name: cls
        for name, cls in vars(result_module).items()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls)
    },
}


def stage_threads(device: str) -> int:
    """The intra-op threads the stage runs at: one in a child beside the analysis
    (:class:`~bracketlens.beside.Beside`), else this process's."""
    return 1 if forkable(device) else torch.get_num_threads()


def discovery_key(model: BracketTransformer, data: BracketDataset, seed: int, device: str) -> str:
    """The SHA-256 (hex) of everything that determines ``report_discovery(model, data, seed)``."""
    fields = {
        "kind": KIND,
        "schema": SCHEMA,
        "weights": weights_digest(model),
        "data": data_digest(data[:REPORT_STRINGS]),
        "seed": seed,
        "threads": stage_threads(device),
        "device": device,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def read_discovery(root: Path, key: str) -> ReportDiscovery | None:
    """The stored result of ``key`` in ``root``, or None: absent or damaged (one warning).

    Raises:
        OSError: the folder or the entry cannot be read.
    """
    expected = {"schema": SCHEMA, "kind": KIND, "key": key}
    return read_entry(root / f"{key}.json", expected, "discovery", _rebuild, "discovery result")


def _rebuild(record: object) -> ReportDiscovery:
    found = decode(record, CLASSES, "a discovery record")
    if not isinstance(found, ReportDiscovery):
        raise RecordError(f"it holds a {type(found).__name__}")
    return found


def write_discovery(root: Path, key: str, found: ReportDiscovery) -> None:
    """Store ``found`` under ``key`` in ``root``; a warning where it cannot."""
    try:
        record = encode(found, CLASSES)
    except TypeError as e:  # a result holding a class the record does not name
        _warn(f"cannot store the discovery result ({e}); it is not kept")
        return
    entry = {"schema": SCHEMA, "kind": KIND, "key": key, "discovery": found.to_json(),
             "record": record}  # fmt: skip
    write_entry(root / f"{key}.json", entry, "discovery result")


class StoredDiscovery:
    """The report's discovery stage: read from ``store``'s folder (None neither reads nor
    writes) where it holds the result, else started beside the analysis
    (:class:`~bracketlens.beside.Beside`) and stored when :meth:`result` collects it.

    Use as a context manager, as :class:`~bracketlens.beside.Beside`.
    """

    def __init__(
        self,
        model: BracketTransformer,
        data: BracketDataset,
        *,
        seed: int,
        device: str,
        store: ExplainStore | None,
    ) -> None:
        self._found: ReportDiscovery | None = None  # read from the store
        self._computed: ReportDiscovery | None = None  # computed beside the analysis
        self._key: str | None = None
        self._root = None if store is None else store.root
        if self._root is not None:
            self._key = discovery_key(model, data, seed, device)
            try:
                self._found = read_discovery(self._root, self._key)
            except OSError as e:  # one warning, and no write to a store that cannot be read
                _warn(f"cannot read the result store {self._root} ({e}); computing the discovery")
                self._key = None
        self._beside = (
            None
            if self._found is not None
            else Beside(report_discovery, model, data, seed=seed, device=device)
        )
        # the analysis runs at the threads it runs at beside the stage's child, so that
        # its results are the same, bit for bit, whether the stage was stored or not
        self._threads: int | None = None
        if self._beside is None and forkable(device):
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._threads - 1))

    @property
    def stored(self) -> bool:
        """Whether the result was read from the store (no stage runs)."""
        return self._beside is None

    @property
    def in_child(self) -> bool:
        """Whether the stage runs in a child process beside this one, using a core."""
        return self._beside is not None and self._beside.in_child

    def result(self) -> ReportDiscovery:
        """The stage's result: the stored one, else the computed one (then stored)."""
        if self._beside is None:
            assert self._found is not None
            self._restore()
            return self._found
        if self._computed is None:  # collected, and stored (or warned about), once
            self._computed = self._beside.result()
            if self._root is not None and self._key is not None:
                write_discovery(self._root, self._key, self._computed)
        return self._computed

    def __enter__(self) -> StoredDiscovery:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._beside is not None:
            self._beside.__exit__(kind, error, trace)
        self._restore()

    def _restore(self) -> None:
        """This process's threads, as they were before the stage."""
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None


def _warn(message: str) -> None:
    warnings.warn(message, StoreWarning, stacklevel=3)
