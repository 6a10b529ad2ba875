"""Every flag value an error message suggests is one the real parser accepts.

The suggestions are read from the source (each ``--flag value`` in a string, with
a module constant's value formatted as the message formats it) and from the
messages themselves, then parsed with ``bracketlens.cli.build_parser``.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from pathlib import Path

import pytest

import bracketlens
from bracketlens.cli.parser import build_parser
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.sample import check_sample
from bracketlens.errors import BracketLensError

SRC = Path(bracketlens.__file__).parent
FLAG_AT_END = re.compile(r"(--[a-z][a-z-]*) $")
# a suggestion: a flag and a number, or a flag and a word after "e.g." or "use"
NUMBER_HINT = re.compile(r"(--[a-z][a-z-]*) ([0-9][0-9,]*[0-9]|[0-9])")
WORD_HINT = re.compile(r"(?:e\.g\.|use) (--[a-z][a-z-]*) ([^\s;,()'\"]+)")


def hints(text: str) -> list[tuple[str, str]]:
    """Every ``--flag value`` that ``text`` suggests."""
    return sorted(set(NUMBER_HINT.findall(text)) | set(WORD_HINT.findall(text)))


SUBCOMMANDS = ["analyze", "report", "evaluate", "circuit", "explain", "seeds", "train", "attack"]


def _module(path: Path) -> str:
    return ".".join(("bracketlens", *path.relative_to(SRC).with_suffix("").parts))


def _rendered(module: str, node: ast.FormattedValue) -> str | None:
    """A formatted module constant as the f-string writes it; None for anything else."""
    if not isinstance(node.value, ast.Name):
        return None
    namespace = vars(importlib.import_module(module))
    if node.value.id not in namespace:
        return None  # a local: its value is not known here
    spec = node.format_spec
    text = "" if spec is None else "".join(str(v.value) for v in spec.values)  # type: ignore[attr-defined]
    return format(namespace[node.value.id], text)


def suggestions_in_source() -> list[tuple[str, str, str]]:
    """(where, flag, value) of every ``--flag value`` written in a string of the package."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.JoinedStr):
                parts = node.values
                for text, value in itertools.pairwise(parts):
                    if not (
                        isinstance(text, ast.Constant) and isinstance(value, ast.FormattedValue)
                    ):
                        continue
                    flag = FLAG_AT_END.search(str(text.value))
                    shown = _rendered(_module(path), value) if flag else None
                    if flag and shown is not None:
                        found.append((where, flag.group(1), shown))
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(where, f, v) for f, v in hints(node.value)]
    return found


def accepted(flag: str, value: str) -> bool:
    """Whether some subcommand taking ``flag`` parses ``flag value``."""
    parser = build_parser()
    tried = False
    for command in SUBCOMMANDS:
        try:
            parser.parse_args([command, flag, value])
        except SystemExit:
            tried = tried or _takes(parser, command, flag)
            continue
        return True
    assert tried, f"no subcommand takes {flag}"
    return False


def _takes(parser, command: str, flag: str) -> bool:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return any(flag in a.option_strings for a in sub._actions)


def test_the_source_suggests_values_and_finds_the_sample_hint():
    found = suggestions_in_source()
    assert ("--n", "1000") in {(f, v) for _, f, v in found}  # data/sample.py's hint
    assert len(found) >= 5


@pytest.mark.parametrize(("where", "flag", "value"), suggestions_in_source())
def test_every_suggested_flag_value_parses(where, flag, value, capsys):
    assert accepted(flag, value), f"{where} suggests '{flag} {value}', which the parser refuses"


def test_the_missing_group_message_suggests_a_value_that_parses():
    data = BracketDataset.from_pairs([("()", True), ("((", False)] * 30)
    messages = []
    for minimum in (1000, 20):
        with pytest.raises(BracketLensError) as err:
            check_sample(data, purpose="the analysis", minimum=minimum, split_seed=0)
        messages.append(str(err.value))
    for message in messages:
        suggested = hints(message)
        assert suggested, message
        assert all(accepted(f, v) for f, v in suggested), message
