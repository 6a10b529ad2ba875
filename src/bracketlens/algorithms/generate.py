"""Exact causal models generated from the atoms of :mod:`.grammar`, deduplicated.

:func:`generated_models` enumerates every rule of one to three atoms (AND and OR
nested at most two deep, NOT on the atoms) that gives the true label on the
check set and needs each of its atoms; adds shortcut add-ons and per-position
models; and keeps one model of each interchange-equivalence class. The work is
done on the distinct rows of atom values of the check set (a few dozen), not on
its strings, and is cached for the process.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bracketlens.algorithms.causal import CausalModel, Tokens, Values, Variable
from bracketlens.algorithms.equivalence import equivalent
from bracketlens.algorithms.grammar import (
    CANDIDATE_ATOMS,
    FAMILY_POSITIONS,
    Atom,
    check_tokens,
    prefix_elevations,
    suffix_elevations,
    true_labels,
)
from bracketlens.errors import BracketLensError

MAX_ATOMS = 3
MAX_SHORTCUTS = 2

#: a rule: ("atom", name) | ("not", rule) | ("and", rule, rule) | ("or", rule, rule)
Rule = tuple


def evaluate(rule: Rule, values: Values) -> np.ndarray:
    """The rule's truth value for every row of ``values`` (atom name -> bool array)."""
    op = rule[0]
    if op == "atom":
        return np.asarray(values[rule[1]], dtype=bool)
    if op == "not":
        return ~evaluate(rule[1], values)
    left, right = evaluate(rule[1], values), evaluate(rule[2], values)
    return left & right if op == "and" else left | right


def rule_text(rule: Rule, top: bool = True) -> str:
    """``"elevation_zero AND NOT suffix_positive"``: the rule as text."""
    op = rule[0]
    if op == "atom":
        return str(rule[1])
    if op == "not":
        return f"NOT {rule_text(rule[1], False)}"
    text = f"{rule_text(rule[1], False)} {op.upper()} {rule_text(rule[2], False)}"
    return text if top else f"({text})"


def rule_words(rule: Rule) -> str:
    """The rule in plain words, from each atom's own words."""
    op = rule[0]
    if op == "atom":
        return _atom(rule[1]).text
    if op == "not" and rule[1][0] == "atom":
        return _atom(rule[1][1]).negated
    if op == "not":
        return f"not ({rule_words(rule[1])})"
    return f"{rule_words(rule[1])} {op} {rule_words(rule[2])}"


def atoms_of(rule: Rule) -> list[str]:
    """The atom names a rule reads, in order of first appearance."""
    if rule[0] == "atom":
        return [rule[1]]
    return list(dict.fromkeys(n for part in rule[1:] for n in atoms_of(part)))


def _atom(name: str) -> Atom:
    return next(a for a in CANDIDATE_ATOMS if a.name == name)


@dataclass(frozen=True)
class Table:
    """The check set in brief: each distinct row of atom values, and its label."""

    atoms: tuple[Atom, ...]  # constants and complements of earlier atoms left out
    rows: np.ndarray  # [distinct, atoms] bool
    label: np.ndarray  # [distinct] bool; None where the row's strings disagree


@functools.cache
def table() -> Table:
    """The atoms that vary on the check set, and their distinct rows with the label."""
    tokens = check_tokens()
    columns: list[np.ndarray] = []
    kept: list[Atom] = []
    for atom in CANDIDATE_ATOMS:
        col = np.asarray(atom.compute(tokens), dtype=bool)
        if col.all() or not col.any() or any((col == ~c).all() for c in columns):
            continue  # a constant, or NOT of an atom kept: NOT is in every rule already
        columns.append(col)
        kept.append(atom)
    rows, inverse = np.unique(np.stack(columns, 1), axis=0, return_inverse=True)
    labels = true_labels(tokens)
    balanced = np.bincount(inverse.ravel(), weights=labels, minlength=len(rows))
    total = np.bincount(inverse.ravel(), minlength=len(rows))
    consistent = (balanced == 0) | (balanced == total)
    if not consistent.all():
        raise AssertionError("the atoms do not determine the label: the grammar misses a fact")
    return Table(tuple(kept), rows, balanced > 0)


def _literal_rules(names: Sequence[str]) -> list[Rule]:
    """Every rule over exactly ``names`` (1-3 atoms): AND/OR at most two deep, NOT on atoms."""
    lits = [[("atom", n), ("not", ("atom", n))] for n in names]
    if len(names) == 1:
        return [lits[0][0]]
    if len(names) == 2:
        return [(op, a, b) for a in lits[0] for b in lits[1] for op in ("and", "or")]
    out: list[Rule] = []
    for outer in range(3):
        i, j = (k for k in range(3) if k != outer)
        for a, b, c in itertools.product(lits[i], lits[j], lits[outer]):
            out += [(o2, (o1, a, b), c) for o1 in ("and", "or") for o2 in ("and", "or")]
    return out


def exact_cores() -> list[Rule]:
    """Every rule of 1-3 atoms giving the true label on every distinct row, each atom needed."""
    t = table()
    names = [a.name for a in t.atoms]
    out: list[Rule] = []
    for k in range(1, MAX_ATOMS + 1):
        for subset in itertools.combinations(range(len(names)), k):
            if not _needs_each(t, subset):
                continue
            values = {names[i]: t.rows[:, i] for i in subset}
            seen: set[bytes] = set()
            for rule in _literal_rules([names[i] for i in subset]):
                if not (evaluate(rule, values) == t.label).all():
                    continue
                key = _full_table(rule, [names[i] for i in subset])
                if key not in seen:  # the same boolean function written another way
                    seen.add(key)
                    out.append(rule)
    return out


def _needs_each(t: Table, subset: tuple[int, ...]) -> bool:
    """The atoms determine the label, and none of them can be dropped."""
    if not _determines(t.rows[:, list(subset)], t.label):
        return False
    return all(
        not _determines(t.rows[:, [j for j in subset if j != i]], t.label) for i in subset
    ) if len(subset) > 1 else True  # fmt: skip


def _determines(rows: np.ndarray, label: np.ndarray) -> bool:
    code = rows.astype(np.int64) @ (1 << np.arange(rows.shape[1]))
    return all(len(np.unique(label[code == c])) <= 1 for c in np.unique(code))


def _full_table(rule: Rule, names: Sequence[str]) -> bytes:
    cells = (np.arange(2 ** len(names))[:, None] >> np.arange(len(names))[None]) & 1
    return evaluate(rule, {n: cells[:, i].astype(bool) for i, n in enumerate(names)}).tobytes()


# --- causal models from rules ---


def atom_model(name: str, rule: Rule, description: str = "") -> CausalModel:
    """A causal model whose variables are the rule's atoms (booleans)."""
    variables = tuple(_atom(n).variable() for n in atoms_of(rule))
    return CausalModel(
        name,
        variables,
        lambda v: evaluate(rule, v),
        description or f"balanced iff {rule_words(rule)}",
        rule_text=rule_text(rule),
        generated=True,
    )


def with_shortcuts(core: Rule, shortcuts: Sequence[str]) -> Rule:
    """``core AND NOT s`` for each shortcut atom ``s``."""
    rule = core
    for s in shortcuts:
        rule = ("and", rule, ("not", ("atom", s)))
    return rule


def shortcut_rules(core: Rule) -> list[Rule]:
    """The core with up to two paren atoms ``s`` (``s => unbalanced``) not in it yet."""
    t = table()
    names = [a.name for a in t.atoms]
    used = set(atoms_of(core))
    free = [
        a.name
        for i, a in enumerate(t.atoms)
        if a.shortcut and a.name not in used and not t.label[t.rows[:, i]].any()
    ]
    return [
        with_shortcuts(core, combo)
        for k in range(1, MAX_SHORTCUTS + 1)
        for combo in itertools.combinations(sorted(free, key=names.index), k)
    ]


#: family -> (its aggregate quantity, how values reduce to it, the value of the empty part)
FAMILIES: dict[str, tuple[str, Callable[..., np.ndarray], Callable[[Tokens], np.ndarray]]] = {
    "suffix": ("max_suffix", np.maximum.reduce, suffix_elevations),
    "prefix": ("min_prefix", np.minimum.reduce, prefix_elevations),
}


def family_model(core: Rule, family: str, positions: int = FAMILY_POSITIONS) -> CausalModel:
    """The core with ``family``'s aggregate read from its elevations at positions
    ``1..positions`` (the rest one background value that is never interchanged).

    For the suffix family the total elevation is the suffix elevation at position 1,
    so the core's elevation atoms read that variable too.
    """
    aggregate, reduce, elevations = FAMILIES[family]
    names = [f"{family}_elevation_{i}" for i in range(1, positions + 1)]
    rest = f"{family}_rest_{'max' if family == 'suffix' else 'min'}"
    derived = [n for n in atoms_of(core) if _atom(n).quantity == aggregate]
    if family == "suffix":
        derived += [n for n in atoms_of(core) if _atom(n).quantity == "elevation"]
    kept = [n for n in atoms_of(core) if n not in derived]

    def at(i: int) -> Callable[[Tokens], np.ndarray]:
        return lambda tokens: elevations(tokens)[:, i].astype(np.int64)

    def rest_value(tokens: Tokens) -> np.ndarray:
        e = elevations(tokens)[:, positions + 1 :]
        whole = e.max(-1, initial=0) if family == "suffix" else e.min(-1, initial=0)
        return whole.astype(np.int64)

    def rule(v: Values) -> np.ndarray:
        quantity = {aggregate: reduce([np.zeros_like(v[rest]), *(v[n] for n in names), v[rest]])}
        if family == "suffix":
            quantity["elevation"] = v[names[0]]
        atoms = dict(v) | {n: _atom(n).compute_from(quantity) for n in derived}
        return evaluate(core, atoms)

    variables = (
        *(Variable(n, at(i), position=i) for i, n in enumerate(names, 1)),
        Variable(rest, rest_value, intervened=False),
        *(_atom(n).variable() for n in kept),
    )
    words = f"{rule_words(core)}, with the {family} elevations at positions 1-{positions}"
    return CausalModel(f"{rule_text(core)} [{family} positions]", variables, rule,
                       f"balanced iff {words}", rule_text=rule_text(core), generated=True)  # fmt: skip


# --- interchange equivalence ---


def atom_fingerprint(rule: Rule) -> tuple[bytes, ...]:
    """Every interchange of an atom model on the check set, as bytes: for each variable,
    the counterfactual label of each distinct row with that atom set false and true
    (a source brings only its value of the atom). Sorted, so that models equal up to
    a renaming of their variables share it."""
    t = table()
    base = {a.name: t.rows[:, i] for i, a in enumerate(t.atoms)}
    prints = []
    for name in atoms_of(rule):
        cf = [evaluate(rule, base | {name: np.full(len(t.rows), x)}) for x in (False, True)]
        prints.append(np.concatenate(cf).tobytes())
    return tuple(sorted(prints))


@dataclass(frozen=True)
class Generated:
    """The generator's models and its counts (rules tried, exact, kept after deduplication)."""

    models: tuple[CausalModel, ...]
    n_rules: int  # syntactic rules of 1-3 atoms tried
    n_exact: int  # exact models, shortcut and per-position ones included, before dedup
    n_kept: int  # after deduplication by interchange equivalence


@functools.cache
def generated_models() -> Generated:
    """Every exact model of the grammar, one per interchange-equivalence class."""
    t = table()
    names = [a.name for a in t.atoms]
    n_rules = sum(
        len(_literal_rules([names[i] for i in s]))
        for k in range(1, MAX_ATOMS + 1)
        for s in itertools.combinations(range(len(names)), k)
    )
    cores = exact_cores()
    rules = [*cores, *(r for core in cores for r in shortcut_rules(core))]
    kept: dict[tuple[bytes, ...], Rule] = {}
    for rule in rules:
        kept.setdefault(atom_fingerprint(rule), rule)
    models = [atom_model(rule_text(r), r) for r in kept.values()]
    families = [
        family_model(core, f)
        for core in cores
        for f, (aggregate, _, _) in FAMILIES.items()
        if any(_atom(n).quantity == aggregate for n in atoms_of(core))
    ]
    unique: list[CausalModel] = []
    for m in families:  # per-position models: few, compared exactly
        if not any(equivalent(m, u) for u in unique):
            unique.append(m)
    n_exact = len(rules) + len(families)
    return Generated(tuple(models + unique), n_rules, n_exact, len(models) + len(unique))


def found_by_generator(model: CausalModel) -> str | None:
    """The generated model equivalent to ``model`` (by interchanges on the check set), if any."""
    return _match(model.name, id(model), model)


@functools.cache
def _match(name: str, ident: int, model: CausalModel) -> str | None:
    for g in generated_models().models:
        if equivalent(model, g):
            return g.name
    return None


def default_models(registered: Sequence[CausalModel], which: str = "all") -> list[CausalModel]:
    """The registered models, then the generated ones that none of them is equivalent to.

    Args:
        which: ``"all"`` generated models, ``"cores"`` (no shortcut add-ons, no
            per-position models) or ``"none"``.
    """
    if which not in ("all", "cores", "none"):
        raise BracketLensError(f"generated models: use 'all', 'cores' or 'none', not {which!r}")
    if which == "none":
        return list(registered)
    taken = {found_by_generator(m) for m in registered}
    cores = {rule_text(r) for r in exact_cores()}
    return [
        *registered,
        *(
            g
            for g in generated_models().models
            if g.name not in taken and (which == "all" or g.name in cores)
        ),
    ]
