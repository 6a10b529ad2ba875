"""explain's verdict in plain words: what the model checks, and where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bracketlens.algorithms.grammar import CANDIDATE_ATOMS
from bracketlens.algorithms.locations import Location

if TYPE_CHECKING:
    from bracketlens.algorithms.result import Alignment, Explanation, ModelScore

#: the hand-registered models' variables, as the rule reads them
_HAND = {
    "elevation": "that the total elevation is 0",
    "negative": "that no suffix opens more than it closes",
    "starts_with_close": "that the first paren is not ')'",
    "ends_with_open": "that the last paren is not '('",
}
_COUNT = {1: "one thing", 2: "two things", 3: "three things", 4: "four things", 5: "five things"}


def variable_words(model: ModelScore, variable: str) -> str:
    """``"that no prefix closes more than it opens"``: what the rule asks of the variable."""
    atom = next((a for a in CANDIDATE_ATOMS if a.name == variable), None)
    if atom is not None:
        negated = f"NOT {variable}" in model.rule
        return f"that {atom.negated if negated else atom.text}"
    if variable in _HAND:
        return _HAND[variable]
    family, _, position = variable.rpartition("_elevation_")
    if position.isdigit():
        return f"the elevation of the {family} at position {position}"
    return f"'{variable}'"


def where_words(location: Location) -> str:
    """``"positions 0-1 after layer 1's attention"``: a location in plain words."""
    p = location.positions
    if len(p) == 1:
        at = f"position {p[0]}"
    elif p == tuple(range(p[0], p[-1] + 1)) and len(p) > 2 and p[0] <= 1:
        # the position sets run to the end of the string: every position (past [start])
        at = "every position" if p[0] == 0 else "every position past [start]"
    elif p == tuple(range(p[0], p[-1] + 1)) and len(p) > 2:
        at = f"positions {p[0]}-{p[-1]}"
    else:
        at = "positions " + "-".join(map(str, p)) if len(p) == 2 else f"positions {p}"
    site = location.site
    kind = site.hook.rsplit(".", 1)[-1]
    place = {
        "hook_resid_pre": f"entering layer {site.layer}",
        "hook_resid_mid": f"after layer {site.layer}'s attention",
        "hook_post": f"in layer {site.layer}'s MLP",
        "hook_resid_post": f"after layer {site.layer}",
    }.get(kind, f"in head {site.layer}.{site.head}")
    if kind == "hook_resid_pre" and site.layer == 0:
        place = "at the input"
    return f"{at} {place}"


def model_sentence(model: ModelScore, alignments: list[Alignment]) -> str:
    """``"checks two things: that ... (where) and that ... (where)"``."""
    mine = [a for a in alignments if a.model == model.name and not a.trivial]
    parts = [
        f"{variable_words(model, a.variable)} ({where_words(a.location)}"
        + (f", {_article(a.dim)} {a.dim}-dimensional subspace" if a.dim else "")
        + ")"
        for a in mine
    ]
    count = _COUNT.get(len(parts), f"{len(parts)} things")
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"checks {count}: {body}" if parts else "checks nothing that is not its input"


def _article(number: int) -> str:
    """ "an" before a number said with a vowel (8, 11, 18, 80-89), else "a"."""
    said = str(number)
    return "an" if said.startswith("8") or said in ("11", "18") else "a"


def verdict(result: Explanation) -> str:
    """The verdict sentence: every passing model, the best first; or the closest and why."""
    by_name = {m.name: m for m in result.models}
    alignments = list(result.variables)
    if result.passing:
        best = by_name[result.best_model]
        text = (
            f"This model {model_sentence(best, alignments)}. That is '{best.name}', "
            f"mean IIA {best.iia.value:.3f} [{best.iia.low:.3f}, {best.iia.high:.3f}]"
        )
        others = [n for n in result.passing if n != best.name]
        if others:
            text += f"; {len(others)} more pass their guards: " + ", ".join(
                f"'{n}'" for n in others
            )
        return text + "."
    if result.closest is None:
        return "No causal model could be tested on these strings."
    name = str(result.closest["model"])
    failing = result.closest["failing"]
    assert isinstance(failing, list)
    why = "; ".join(
        f"{f['variable']} {f['guard']} {_fmt(f['value'])}{_bound(f.get('bound'))} against "
        f"{f['threshold']}"
        for f in failing[:3]
    )
    more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
    combined = ""
    if result.combined is not None:
        combined = f" A combined model covers {float(result.combined['coverage']):.0%} of inputs."  # type: ignore[arg-type]
    return (
        f"No causal model passes its guards. The closest, '{name}' "
        f"({by_name[name].description}), fails: {why}{more}.{combined}"
    )


def _fmt(x: object) -> str:
    return "untested" if x is None else f"{float(x):.3f}"  # type: ignore[arg-type]


def _bound(bound: object) -> str:
    """The 95% bound a guard is judged by, to 4 places: a value under its bar can fail by
    its bound."""
    return "" if bound is None else f" (95% bound {float(bound):.4f})"  # type: ignore[arg-type]


#: the course's algorithm: the total elevation is 0 and no suffix goes above 0
COURSE = "elevation_and_negative"


def course_verdict(result: Explanation) -> str:
    """The course's algorithm as one hypothesis among the others, and its verdict here."""
    course = next((m for m in result.models if m.name == COURSE), None)
    if course is None:
        return "The course's algorithm was not tested."
    head = (
        "The course's algorithm (the total elevation is 0 and no suffix opens more than it "
        "closes) is one hypothesis: on this model it "
    )
    if course.passes:
        return (
            head
            + f"passes, mean IIA {course.iia.value:.3f} [{course.iia.low:.3f}, {course.iia.high:.3f}]."
        )
    failing = [
        f"{a.variable} {g.name} "
        + (
            "untested"
            if g.untested
            else f"{g.value:.3f} (bound {g.bound:.3f}, needs {g.threshold})"
        )
        for a in result.variables
        if a.model == COURSE and not a.trivial
        for g in a.guards
        if not g.passes
    ]
    return head + f"fails, mean IIA {course.iia.value:.3f}: " + "; ".join(failing[:3]) + "."
