"""Terminal output of the CLI: rich tables built from result objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from bracketlens.model.predict import Evaluation

_console = Console()


def prediction_table(rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per string: P(balanced), the model's verdict, the truth."""
    table = Table("string", "P(balanced)", "model says", "truth", "")
    for r in rows:
        says = r["p_balanced"] > 0.5
        table.add_row(
            r["string"] or "(empty)",
            f"{100 * r['p_balanced']:.4f}%",
            _verdict(says),
            _verdict(r["label"]),
            "" if says == r["label"] else "[bold red]wrong[/]",
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


def _verdict(balanced: bool) -> str:
    return "balanced" if balanced else "unbalanced"
