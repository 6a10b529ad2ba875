"""What every subcommand of the CLI gets without asking: the parser, argument types, the guard.

- :class:`Parser`: a usage mistake is one line on stderr and exit code 2, and
  every subcommand takes ``--debug``.
- argparse ``type=`` validators whose errors state the allowed range:
  :func:`int_range`, :func:`positive_int`, :data:`seed_type`, :data:`n_strings_type`.
- :func:`strict_json_stdout`: a ``--json`` command's output, made strict JSON.
- :func:`show_warning` and :func:`one_line`: library warnings and errors as one line.
- :func:`sigterm_as_interrupt`: SIGTERM raises :class:`Terminated`, so a command
  stopped by ``kill`` cleans up (children, temporary folders) as Ctrl-C does.

Imports nothing heavy: ``bracketlens --help`` must answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from bracketlens.jsonout import has_nonfinite, strict_dumps
from bracketlens.limits import MAX_SEED, MAX_STRINGS


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line on stderr, exit code 2.

    Every parser, so every subcommand, takes ``--debug`` (read by :func:`bracketlens.cli.main`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="on an internal error, print the full traceback",
        )

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type=`` accepting whole numbers in ``low..high``; the error states the range."""

    def parse(text: str) -> int:
        allowed = f"must be a whole number from {low:,} to {high:,}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{allowed}; got {text[:40]!r}") from None
        if not low <= value <= high:
            shown = f"{value:,}" if abs(value) < 10**40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(f"{allowed}; got {shown}")
        return value

    parse.__name__ = "whole number"
    return parse


def positive_int(high: int) -> Callable[[str], int]:
    """An argparse ``type=`` for a count from 1 to ``high``."""
    return int_range(1, high)


seed_type = int_range(0, MAX_SEED)  # every random generator here takes 0..2**32-1
n_strings_type = positive_int(MAX_STRINGS)


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    """A library's warning as one plain line (``--debug`` shows Python's usual two)."""
    text = one_line(message).split(" (Triggered internally at")[0]  # torch's C++ location
    print(f"bracketlens: warning: {text}", file=sys.stderr)


def one_line(e: BaseException | str) -> str:
    """An error's message on one line (what a traceback would spread over several)."""
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def strict_json_stdout(enabled: bool) -> Iterator[None]:
    """Hold a ``--json`` command's stdout and make it strict JSON before it is written.

    Whatever a command prints (``json.dumps`` included) is checked, so no output of
    any subcommand carries a bare ``NaN``; output that is not JSON passes unchanged.
    Nothing is written if the command fails, so a failed run never leaves half a
    JSON document.
    """
    if not enabled:
        yield
        return
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    text = buffer.getvalue()
    if has_nonfinite(text):
        import json

        indent = 2 if "\n  " in text else None
        text = strict_dumps(json.loads(text), indent=indent) + "\n"
    sys.stdout.write(text)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that every cleanup Ctrl-C runs runs too."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# `seeds --recipe` names and what they are, for --help without importing torch; the
# recipes themselves are bracketlens.sweeps.recipes.RECIPES (a test keeps the two in step)
RECIPE_HELP = {
    "tiny": (
        "40 steps on 2,000 strings, a smoke-sized explain: seconds per seed, "
        "for tests (not a working model)"
    ),
    "short": "3,000 steps, minutes per seed (the default)",
    "default": "11,000 steps, the bundled model's recipe",
}
