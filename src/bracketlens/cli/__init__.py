"""Command-line interface: the ``bracketlens`` entry point and its exit codes.

The parser is :mod:`.parser` and the commands :mod:`.commands`. Heavy imports (torch,
transformer-lens) happen inside the commands so that ``bracketlens --help`` answers at
once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from bracketlens.cli.parser import build_parser
from bracketlens.cli.support import (
    Terminated,
    one_line,
    show_warning,
    sigterm_as_interrupt,
    strict_json_stdout,
)
from bracketlens.errors import BracketLensError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bracketlens`` console script.

    Exit codes: 0 done; 2 a usage mistake (one line on stderr); 1 an internal
    error (one line, or the traceback with ``--debug``); 3 ``seeds`` finished but
    some seeds failed (their rows say why); 130 interrupted (Ctrl-C); 143
    terminated (SIGTERM).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = warnings.showwarning
    if "--debug" not in argv:
        warnings.showwarning = show_warning
    try:
        with sigterm_as_interrupt():
            return _guarded(argv)
    finally:
        warnings.showwarning = previous


def _guarded(argv: list[str]) -> int:
    """Parse and run; user mistakes exit 2, anything unexpected exits 1 (the guard)."""
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        with strict_json_stdout(bool(getattr(args, "json", False))):
            return int(args.func(args) or 0)
    except BracketLensError as e:
        print(f"bracketlens: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Terminated:  # SIGTERM: the cleanups of Ctrl-C have run on the way here
        print("bracketlens: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("bracketlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to tell anyone
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # the guard: no traceback unless asked for
        if "--debug" in argv:
            traceback.print_exc()
        else:
            print(
                f"bracketlens: internal error: {type(e).__name__}: {one_line(e)[:300]}; "
                "run with --debug for the traceback",
                file=sys.stderr,
            )
        return 1
