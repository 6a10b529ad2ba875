"""Reading user-given JSON files (data sets, saved attack results) safely.

Everything a hostile or careless file could do to a plain ``json.loads`` is
checked before the file is parsed whole: what the path is (a folder, a device),
its size, that it holds a JSON list, and how deeply it nests. Each problem is one
:class:`~bracketlens.errors.BracketLensError` naming the file and what to do.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np

from bracketlens.errors import BracketLensError
from bracketlens.limits import MAX_DATA_BYTES, MAX_JSON_DEPTH

_CHUNK = 8 * 2**20  # bytes scanned at a time by the depth check
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def read_json_list(path: str | os.PathLike[str], *, what: str, expected: str) -> list[object]:
    """Parse a JSON file that must hold a list nested at most ``MAX_JSON_DEPTH`` deep.

    Args:
        path: the file.
        what: how messages name it, e.g. ``"data file"``.
        expected: what a valid file holds, e.g. ``'a list of ["(())", true] pairs'``.

    Raises:
        BracketLensError: the path is missing, a folder or not a regular file; the
            file is unreadable, larger than ``MAX_DATA_BYTES``, empty, not UTF-8, not
            a JSON list, nested too deeply, or not valid JSON.
    """
    path = Path(path)
    raw = _read_bounded(path, what)
    text = raw.lstrip()
    if not text:
        raise BracketLensError(f"{what} {path} is empty; expected {expected}")
    if not text.startswith(b"["):
        first = text[:1].decode("utf-8", "replace")
        raise BracketLensError(
            f"{what} {path} does not hold a JSON list (it starts with {first!r}); expected {expected}"
        )
    depth = nesting_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise BracketLensError(
            f"{what} {path} nests {depth} levels deep; expected {expected} "
            f"({MAX_JSON_DEPTH} levels)"
        )
    try:
        records = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BracketLensError(
            f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise BracketLensError(
            f"{what} {path} is not valid JSON ({e}); expected {expected}"
        ) from None
    if not isinstance(records, list):  # e.g. "[1] 2" fails above; kept for clarity
        raise BracketLensError(f"{what} {path} does not hold a JSON list; expected {expected}")
    return records


def _read_bounded(path: Path, what: str) -> bytes:
    """The bytes of a regular file no larger than ``MAX_DATA_BYTES``."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BracketLensError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise BracketLensError(f"{what} {path} cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BracketLensError(f"{what} {path} is a folder; pass the JSON file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise BracketLensError(f"{what} {path} is not a regular file; pass a JSON file")
    limit_mb = MAX_DATA_BYTES // 2**20
    if info.st_size > MAX_DATA_BYTES:
        raise BracketLensError(
            f"{what} {path} is {info.st_size / 2**20:,.1f} MiB; {what}s are limited to "
            f"{limit_mb} MiB (about 2,000,000 strings): split it, or generate with --n"
        )
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)  # the file may have grown since stat
    except OSError as e:
        raise BracketLensError(f"{what} {path} cannot be read ({e.strerror})") from None
    if len(raw) > MAX_DATA_BYTES:
        raise BracketLensError(f"{what} {path} is larger than the {limit_mb} MiB limit")
    return raw


def nesting_depth(raw: bytes) -> int:
    """How deeply the lists and objects of a JSON text nest, without parsing it.

    Brackets inside strings are skipped: a quote toggles "inside a string" unless
    a backslash precedes it. (A ``\\\\"`` pair is misread, but no valid data file has
    one: its strings are parens only.) Runs in numpy, chunk by chunk.
    """
    depth = deepest = 0
    inside = False
    for start in range(0, len(raw), _CHUNK):
        chunk = np.frombuffer(raw, np.uint8, count=min(_CHUNK, len(raw) - start), offset=start)
        quotes = chunk == _QUOTE
        escaped = np.zeros_like(quotes)
        escaped[1:] = chunk[:-1] == _BACKSLASH
        if start and raw[start - 1] == _BACKSLASH:
            escaped[0] = True
        toggles = np.cumsum(quotes & ~escaped) % 2 == 1
        in_string = toggles ^ inside
        step = np.isin(chunk, _OPEN).astype(np.int64) - np.isin(chunk, _CLOSE)
        step[in_string | quotes] = 0
        running = depth + np.cumsum(step)
        if len(running):
            deepest = max(deepest, int(running.max()))
            depth = int(running[-1])
            inside = bool(in_string[-1])
    return deepest
