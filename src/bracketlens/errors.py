"""The one error type for user mistakes."""

from __future__ import annotations


class BracketLensError(ValueError):
    """A mistake in what the user asked for: the message says what to do instead.

    Raised for bad characters or over-long bracket strings, malformed data files,
    checkpoints of the wrong shape, unknown layers, heads or hook names, and bad
    command-line arguments. The CLI turns it into one line on stderr and exit code 2.
    """
