"""Processes seen through /proc (Linux): who started whom, and who still runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def parent(pid: int) -> int | None:
    """The parent's process id, or None once ``pid`` is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def processes() -> Iterator[int]:
    """Every process id now listed in /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [p for p in processes() if parent(p) == pid]


def descends(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` started ``pid``, at any depth."""
    current: int | None = pid
    while current is not None and current > 1:
        if current == ancestor:
            return True
        current = parent(current)
    return False


def command_line(pid: int) -> bytes:
    """The process's command line as /proc holds it (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, finished but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
