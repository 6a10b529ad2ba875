"""Terminal output of the CLI: rich tables built from result objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bracketlens.model.predict import Evaluation

if TYPE_CHECKING:
    from bracketlens.adversarial import AttackResult
    from bracketlens.adversarial import Finding as AttackFinding
    from bracketlens.analysis import Analysis

_console = Console()


def prediction_table(rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per string: P(balanced), the model's verdict, the truth."""
    table = Table("string", "P(balanced)", "model says", "truth", "result")
    for r in rows:
        says = r["p_balanced"] > 0.5
        table.add_row(
            r["string"] or "(empty)",
            f"{100 * r['p_balanced']:.4f}%",
            _verdict(says),
            _verdict(r["label"]),
            "right" if says == r["label"] else "[bold red]wrong[/]",
        )
    _console.print(table)


def evaluation_table(result: Evaluation, description: str) -> None:
    """Overall accuracy, then accuracy per failure group."""
    _console.print(
        f"[bold]{100 * result.accuracy:.3f}%[/] accuracy on {result.n:,} strings "
        f"({description}); {result.n_wrong} wrong"
    )
    table = Table("failure group", "strings", "wrong", "accuracy")
    for label, g in result.by_group.items():
        acc = "-" if g.n == 0 else f"{100 * g.accuracy:.3f}%"
        table.add_row(label, f"{g.n:,}", str(g.n_wrong), acc)
    _console.print(table)


def training_summary(record: Mapping[str, Any], path: str) -> None:
    """Where the checkpoint went and how well it does on held-out data."""
    table = Table("held-out set", "strings", "accuracy")
    for name, res in record["held_out"].items():
        table.add_row(f"{name} ({res['recipe']})", f"{res['n']:,}", f"{100 * res['accuracy']:.3f}%")
    _console.print(f"saved {path} after {record['steps']:,} steps in {record['train_seconds']} s")
    _console.print(table)


def attack_tables(result: AttackResult, top: int) -> None:
    """What each search stage cost and found, then the ``top`` wrongest strings of each label."""
    _console.print(
        f"[bold]{result.evaluations:,}[/] of {result.budget:,} evaluations (seed {result.seed}); "
        f"adversarial accuracy {100 * result.adversarial_accuracy:.2f}%"
    )
    stages = Table("stage", "evaluations", "accuracy", "best unbalanced", "best balanced")
    for st in result.stages:
        acc = "-" if st.evaluations == 0 else f"{100 * st.accuracy:.2f}%"
        best = (st.best_unbalanced, st.best_balanced)
        cells = ["-" if f is None else f"{100 * f.p_balanced:.5f}%" for f in best]
        stages.add_row(st.name, f"{st.evaluations:,}", acc, *cells)
    _console.print(stages)
    for label, findings in ((False, result.unbalanced), (True, result.balanced)):
        _console.print(_findings_table(findings[:top], label))


def _findings_table(findings: Sequence[AttackFinding], label: bool) -> Table:
    """The wrongest findings of one label; P(balanced) in red where the model is wrong."""
    title = "balanced strings, lowest" if label else "unbalanced strings, highest"
    table = Table(title=f"{title} P(balanced)")
    table.add_column("string", no_wrap=True)
    for name in ("P(balanced)", "log-odds", "found by"):
        table.add_column(name)
    for f in findings:
        p = f"{100 * f.p_balanced:.5f}%"
        table.add_row(
            f.string or "(empty)",
            p if f.correct else f"[bold red]{p}[/]",
            f"{f.logit_diff:+.3f}",
            f.stage,
        )
    return table


def _verdict(balanced: bool) -> str:
    return "balanced" if balanced else "unbalanced"


@contextmanager
def progress_steps(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the analysis step that runs; silent when not enabled."""
    if not enabled:
        yield lambda _: None
        return
    with _console.status("starting") as status:
        yield lambda name: status.update(f"[bold]{name}[/]...")


def findings_summary(findings: Analysis) -> None:
    """What the model computes in one sentence (explain's verdict), then the headline
    numbers of an analysis, as one table."""
    if findings.explanation is not None:
        from bracketlens.algorithms.store import reuse_note
        from bracketlens.algorithms.words import course_verdict

        _console.print(f"[bold]{findings.explanation.verdict}[/]")
        _console.print(course_verdict(findings.explanation))
        note = reuse_note(findings.explanation)
        if note is not None:
            _console.print(note, markup=False, highlight=False)
    loc = findings.localisation
    e = findings.elevation
    table = Table("finding", "value", title="bracketlens analysis")
    acc = findings.accuracy
    table.add_row(
        "accuracy",
        f"{100 * acc.value:.3f}% [{100 * acc.low:.3f}, {100 * acc.high:.3f}] on {acc.n:,} strings",
    )
    table.add_row("final LN fit r^2 (held out)", f"{findings.ln_final_r2['held_out_half']:.4f}")
    for role in (loc.elevation_head, loc.negative_head, loc.read_position, loc.tally_head,
                 loc.start_close_component):  # fmt: skip
        table.add_row(role.role, f"{role.text or 'not found'} (confidence {role.confidence:.2f})")
    if e is not None:
        table.add_row("attention on read position", str(findings.attention_read))
        table.add_row("cos(v_L, v_R)", f"{e.tally.cosine:.4f}")
        table.add_row("claims that hold", f"{sum(c.holds for c in e.claims)} of {len(e.claims)}")
    if findings.discovery is not None:
        table.add_row("circuit found without a template", _discovered(findings))
    _console.print(table)


def _discovered(findings: Analysis) -> str:
    """The discovered circuit in one line: its size, held-out f and the course's roles in it."""
    from bracketlens.discovery.stage import roles_sentence

    found = findings.discovery
    d = None if found is None else found.result
    if d is None:
        return f"none ({found.reason if found else 'not run'})"
    if d.faithfulness_reason is not None:
        return f"none ({d.faithfulness_reason})"
    return roles_sentence(d, findings.localisation)


def circuit_table(result: Mapping[str, Any]) -> None:
    """Roles found and the share of loss each hypothesis recovers."""
    table = Table("role", "where", title="bracketlens circuit")
    found = result["localisation"]
    for key in ("elevation_head", "negative_head", "read_position", "tally_head",
                "start_close_component"):  # fmt: skip
        value = found[key]["location"]
        table.add_row(key.replace("_", " "), "not found" if value is None else str(value))
    table.add_row("mlp neurons", ", ".join(found["mlp_neurons"]) or "none")
    for test in result["resampling_tests"]:
        group = test["headline_group"]
        value, ci = test["loss_recovered"][group], (test["loss_recovered_ci95"] or {}).get(group)
        shown = f"{100 * value:.1f}%"
        if ci is not None:
            shown += f" (95% CI {100 * ci['ci_low']:.1f} to {100 * ci['ci_high']:.1f})"
        table.add_row(f"loss recovered ({group}): {test['hypothesis']}", shown)
    paths = result.get("path_patching")
    if paths is not None:
        share = paths["route_share_of_sender_at_read_position"]["all"]
        shown = f"{100 * share:.1f}%"
        ci = paths.get("route_share_ci95", {}).get("all")
        if ci is not None:
            shown += f" (95% CI {100 * ci['ci_low']:.1f} to {100 * ci['ci_high']:.1f})"
        table.add_row("claimed route's share (path patching)", shown)
    for group, top in (result.get("attribution_patching") or {}).items():
        best = ", ".join(f"{t['component']} @ {t['position']}" for t in top[:3])
        table.add_row(f"matters most ({group})", best)
    _console.print(table)


def seeds_table(result: Mapping[str, Any]) -> None:
    """One line per seed, then each role's locations and each verdict with Wilson intervals."""
    rows, summary = result["rows"], result["summary"]
    roles = list(summary["roles"])
    short = {"elevation_head": "elev", "negative_head": "neg", "start_close_component": "start )"}
    table = Table(
        "seed", "acc", *[short.get(r, r.split("_")[0]) for r in roles], "verdict", "IIA", ""
    )
    table.title = "seeds"
    for row in rows:
        found = row["roles"] or {}
        cells = [str((found.get(r) or {}).get("location") or "-") for r in roles]
        accuracy = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
        iia = "-" if row["iia"] is None else f"{row['iia']:.3f}"
        note = row["error"] or ("reused" if row["reused"] else "")
        table.add_row(str(row["seed"]), accuracy, *cells, str(row["verdict"] or "-"), iia, note)
    _console.print(table)
    recurrence = Table("role", "location", "seeds", "fraction [95% Wilson]", title="recurrence")
    for role, entries in summary["roles"].items():
        for e in entries:
            recurrence.add_row(role.replace("_", " "), e["location"], str(e["count"]), _share(e))
    for e in summary["verdicts"]:
        recurrence.add_row("verdict", e["verdict"], str(e["count"]), _share(e))
    for e in summary.get("passing_models") or []:
        recurrence.add_row("passes", e["model"], str(e["count"]), _share(e))
    _console.print(recurrence)
    for seed in summary.get("unexplained_seeds") or []:
        fails = ", ".join(f"{f['variable']} {f['guard']}" for f in seed["failing"][:3])
        _console.print(f"seed {seed['seed']}: no model passes; closest {seed['closest']} "
                       f"fails {fails or 'no guard (variables not aligned)'}")  # fmt: skip
    course = summary["course_layout"]
    _console.print(
        f"course layout ({course['layout']}): {course['count']} of {summary['n_analysed']} "
        f"{_share(course)}; unexplained: {summary['unexplained']}; failed: {summary['n_failed']}"
    )


def _share(entry: Mapping[str, Any]) -> str:
    if entry["fraction"] is None:
        return "n/a"
    return f"{entry['fraction']:.0%} [{entry['ci_low']:.0%}, {entry['ci_high']:.0%}]"


def explanation_table(result: Mapping[str, Any]) -> None:
    """The verdict in one sentence, then one table per passing model (or the closest, and
    the course's): each variable's alignment; then every model in one line each."""
    _console.print(f"[bold]{result['verdict']}[/]")
    closest = [result["closest"]["model"]] if result.get("closest") else []
    shown = {*result.get("passing", []), *closest, "elevation_and_negative"}
    ranked = Table("model", "passes", "IIA [95% CI]", "telling IIA", title="every model tested")
    for m in sorted(result["models"], key=lambda m: (not m.get("passes"), -m["iia_ci"][0])):
        lo, hi = m["iia_ci"]
        ranked.add_row(m["name"], "yes" if m.get("passes") else "no",
                       f"{m['iia']:.3f} [{lo:.3f}, {hi:.3f}]", _value(m.get("telling_iia")))  # fmt: skip
    for m in (m for m in result["models"] if m["name"] in shown):
        lo, hi = m["iia_ci"]
        best = " (best)" if m["name"] == result["best_model"] else ""
        table = Table("variable", "where", "dim", "IIA [95% CI]", "to unb.", "to bal.", "same",
                      "control", "null flips",
                      title=f"{m['name']}{best}: mean IIA {m['iia']:.3f} [{lo:.3f}, {hi:.3f}]",
                      caption="coverage: " + ", ".join(f"{g} {_value(c)}" for g, c in
                                                       m["coverage"].items() if c is not None))  # fmt: skip
        for v in (v for v in result["variables"] if v["model"] == m["name"]):
            kinds = [
                _value(v["iia_by_kind"][k]) for k in ("to_unbalanced", "to_balanced", "unchanged")
            ]
            lo, hi = v["iia_ci"]
            table.add_row(v["name"], v["location"], str(v["dim"] or "all"),
                          f"{v['iia']:.3f} [{lo:.2f}, {hi:.2f}]", *kinds,
                          _value(v["control_iia"]), _value(v["null_flip_rate"]))  # fmt: skip
        _console.print(table)
    _console.print(ranked)


def _value(x: float | None) -> str:
    """Three decimals, or "-" where a pair kind had no pair."""
    return "-" if x is None else f"{x:.3f}"
