"""Run a sweep: reuse finished seeds, run the rest in-process or as Ray tasks.

The driver alone writes into ``--out``, as each seed finishes, so that a
worker killed mid-task leaves nothing behind, a seed is written once, and
Ctrl-C keeps every seed finished before it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bracketlens.atomic import atomic_write_text
from bracketlens.errors import BracketLensError
from bracketlens.sweeps.cluster import check_address, init_ray
from bracketlens.sweeps.recipes import Recipe
from bracketlens.sweeps.store import (
    check_out,
    prepare_out,
    reusable_row,
    row_path,
    write_result,
    write_table,
)
from bracketlens.sweeps.task import SCHEMA_VERSION, SeedResult, base_row, run_seed

MAX_RETRIES = 2  # a seed whose worker dies is tried at most three times in all
INSTALL_HINT = "pip install 'bracketlens[cluster]'"


@dataclass(frozen=True)
class Sweep:
    """What to run: which seeds, how, and where the results go."""

    seeds: Sequence[int]
    recipe: Recipe
    out: Path
    workers: int = 1
    address: str | None = None
    device: str | None = None  # None: cuda where the cluster has GPUs, else cpu
    debug: bool = False  # Ray's own log lines on the terminal

    @property
    def uses_ray(self) -> bool:
        return self.workers > 1 or self.address is not None


@dataclass(frozen=True)
class SweepResult:
    """Every seed's row (in seed order) and the folder they were written to."""

    rows: list[dict[str, Any]]
    out: Path

    @property
    def failed(self) -> list[int]:
        """The seeds whose row holds an error."""
        return [int(r["seed"]) for r in self.rows if r.get("error") is not None]

    def to_json(self) -> dict[str, object]:
        from bracketlens.sweeps.summary import summarise

        return {
            "schema_version": SCHEMA_VERSION,
            "rows": self.rows,
            "summary": summarise(self.rows),
        }


def run_sweep(
    sweep: Sweep, *, on_row: Callable[[dict[str, Any]], None] | None = None
) -> SweepResult:
    """Run every seed not already finished, write each as it ends, then the table.

    ``on_row`` sees every row as it is known: reused ones first, then each as it ends.
    """
    if sweep.workers < 1:
        raise BracketLensError(f"--workers must be at least 1, got {sweep.workers}")
    ray = import_ray() if sweep.uses_ray else None  # fail before any work
    check_out(sweep.out, sweep.seeds)  # creates nothing: a dead --address leaves no folder
    if sweep.address is not None:
        check_address(sweep.address)
    out = prepare_out(sweep.out, sweep.seeds)
    rows: dict[int, dict[str, Any]] = {}
    for seed in sweep.seeds:
        reused = reusable_row(out, seed, sweep.recipe)
        if reused is not None:
            rows[seed] = reused
            if on_row is not None:
                on_row(reused)
    pending = [s for s in sweep.seeds if s not in rows]

    def finished(result: SeedResult) -> None:
        row = _saved(out, result, sweep.recipe)
        rows[int(row["seed"])] = row
        if on_row is not None:
            on_row(row)

    if pending and ray is not None:
        _run_on_ray(ray, sweep, pending, finished)
    else:
        for seed in pending:
            finished(run_seed(seed, sweep.recipe, sweep.device or "cpu"))
    ordered = [rows[s] for s in sweep.seeds]
    write_table(out, ordered)
    return SweepResult(ordered, out)


def _saved(out: Path, result: SeedResult, recipe: Recipe) -> dict[str, Any]:
    """Save a seed; a seed that cannot be saved is an error row, and the sweep goes on."""
    try:
        return write_result(out, result, recipe)
    except (OSError, BracketLensError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        row = dict(result.row) | {"checkpoint": None, "checkpoint_sha256": None}
        row["error"] = f"could not save the seed's files: {reason}"
    with contextlib.suppress(OSError):  # the row still reaches the table and the summary
        atomic_write_text(row_path(out, int(row["seed"])), json.dumps(row, indent=2))
    return row


def import_ray() -> Any:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BracketLensError(
            f"more than one worker (or --address) needs Ray: {INSTALL_HINT}"
        ) from None
    return ray


def _run_on_ray(
    ray: Any, sweep: Sweep, pending: Sequence[int], finished: Callable[[SeedResult], None]
) -> None:
    """One Ray task per seed (1 CPU, 1 GPU where there are GPUs); rows as tasks end."""
    # Ray's own notices (a worker died, a task is retried) go to stderr: stdout is the caller's
    with contextlib.redirect_stdout(sys.stderr):
        _submit_and_collect(ray, sweep, pending, finished)


def _submit_and_collect(
    ray: Any, sweep: Sweep, pending: Sequence[int], finished: Callable[[SeedResult], None]
) -> None:
    started = not ray.is_initialized()
    if started:
        init_ray(ray, sweep.workers, sweep.address, debug=sweep.debug)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        device = sweep.device or ("cuda" if gpus else "cpu")
        task = ray.remote(run_seed).options(
            num_cpus=1, num_gpus=1 if gpus else 0, max_retries=MAX_RETRIES, name="bracketlens_seed"
        )
        # the seeds run in parallel: each explain in its worker alone (split=False)
        refs = {task.remote(seed, sweep.recipe, device, False): seed for seed in pending}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                seed = refs.pop(done[0])
                finished(_result(ray, done[0], seed, sweep.recipe, device))
        finally:
            for ref in refs:  # Ctrl-C or an error: stop what has not finished
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def _result(ray: Any, ref: Any, seed: int, recipe: Recipe, device: str) -> SeedResult:
    """The task's result, or an error row once Ray has given up on it."""
    try:
        result: SeedResult = ray.get(ref)
    except ray.exceptions.RayError as e:
        row = base_row(seed, recipe, device)
        row["error"] = (
            f"{type(e).__name__} (Ray gave up after {MAX_RETRIES} retries): {_first_line(e)}"
        )
        return SeedResult(row, None)
    return result


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
