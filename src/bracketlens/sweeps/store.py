"""A sweep's folder: one checkpoint and one JSON row per seed, and the Parquet table.

Layout of ``--out``::

    sweep.json                      the manifest: marks the folder as a sweep's
    rows/seed-000042.json           the row (written last: it marks the seed finished)
    models/seed-000042.safetensors  the checkpoint, with its sidecar seed-000042.json
    seeds.parquet                   every row of the last run, one column per field

The per-seed files are the source of truth; the table is rebuilt from them.

Ownership: a folder is a sweep's only when it holds the manifest. In a folder
without one, a file at any path the sweep would write belongs to the user, and
the sweep refuses before any work. In a marked folder every such file is the
sweep's own: a damaged one is retrained and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bracketlens.atomic import atomic_write, atomic_write_text
from bracketlens.errors import BracketLensError
from bracketlens.sweeps.recipes import Recipe
from bracketlens.sweeps.task import ROLES, SeedResult

TABLE = "seeds.parquet"
MANIFEST = "sweep.json"
MANIFEST_BODY = {"written_by": "bracketlens seeds", "format_version": 1}
MAX_ROW_BYTES = 2**20  # a row is a few KB


def check_out(out: str | os.PathLike[str], seeds: Iterable[int]) -> Path:
    """Refuse an ``--out`` the sweep may not write into, creating nothing.

    ``out`` must be absent, a sweep's folder (it holds the manifest), or a folder
    holding nothing at the paths this sweep writes for ``seeds``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BracketLensError(f"{out} is a file; choose a folder for --out")
    if not out.resolve().parent.is_dir():
        raise BracketLensError(f"folder {out.resolve().parent} does not exist; create it first")
    if not out.exists() or is_sweep_folder(out):
        return out
    manifest = out / MANIFEST
    if manifest.exists() or manifest.is_symlink():
        raise BracketLensError(
            f"{manifest} is not a bracketlens sweep's manifest, so {out} is not a sweep's "
            "folder; choose another --out"
        )
    taken = [p for p in sweep_paths(out, seeds) if p.exists() or p.is_symlink()]
    if taken:
        raise BracketLensError(
            f"{taken[0]} is not a bracketlens sweep's ({out} has no {MANIFEST}, which every "
            "sweep writes), so it is never overwritten; choose another --out"
        )
    return out


def sweep_paths(out: Path, seeds: Iterable[int]) -> list[Path]:
    """Every file the sweep writes in ``out`` for ``seeds``, the table last."""
    paths = []
    for seed in seeds:
        checkpoint = checkpoint_path(out, seed)
        paths += [row_path(out, seed), checkpoint, checkpoint.with_suffix(".json")]
    return [*paths, out / TABLE]


def is_sweep_folder(out: Path) -> bool:
    """Whether ``out`` holds the manifest a sweep writes."""
    manifest = out / MANIFEST
    try:
        if manifest.is_symlink() or manifest.stat().st_size > MAX_ROW_BYTES:
            return False
        return bool(json.loads(manifest.read_bytes()) == MANIFEST_BODY)
    except (OSError, ValueError, RecursionError):
        return False


def prepare_out(out: str | os.PathLike[str], seeds: Iterable[int] = ()) -> Path:
    """Check ``out`` (:func:`check_out`), then create it, its subfolders and the manifest."""
    out = check_out(out, seeds)
    try:
        for sub in ("rows", "models"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        if not is_sweep_folder(out):
            atomic_write_text(out / MANIFEST, json.dumps(MANIFEST_BODY, indent=2))
    except OSError as e:
        raise BracketLensError(
            f"cannot write to {out} ({e.strerror or e}); choose another --out"
        ) from e
    return out


def row_path(out: Path, seed: int) -> Path:
    return out / "rows" / f"seed-{seed:06d}.json"


def checkpoint_path(out: Path, seed: int) -> Path:
    return out / "models" / f"seed-{seed:06d}.safetensors"


def reusable_row(out: Path, seed: int, recipe: Recipe) -> dict[str, Any] | None:
    """The stored row of ``seed`` if it can be reused as it is, marked ``"reused": true``.

    A row is reused only when its seed, recipe hash and bracketlens version match,
    it holds no error, it has ``explain``'s verdict, its
    checkpoint's SHA-256 is the one recorded in it, the checkpoint loads as a
    model of the recipe, and its sidecar is a training record. Anything else,
    damaged files included, is trained again.
    """
    from bracketlens import __version__

    row = _read_row(row_path(out, seed))
    matches = (
        isinstance(row, dict)
        and row.get("seed") == seed
        and row.get("recipe_hash") == recipe.hash
        and row.get("version") == __version__
        and row.get("error") is None
        and row.get("verdict") is not None  # a row without explain's verdict is incomplete
        and _checkpoint_intact(checkpoint_path(out, seed), row.get("checkpoint_sha256"), recipe)
    )
    return row | {"reused": True} if matches and isinstance(row, dict) else None


def _read_row(path: Path) -> object:
    """The JSON at ``path``; None when absent, unreadable or damaged (the seed is retrained)."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_ROW_BYTES:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _checkpoint_intact(path: Path, digest: object, recipe: Recipe) -> bool:
    """Whether the checkpoint has the recorded digest, loads, and has its training record."""
    from bracketlens.model.checkpoint import (
        check_state,
        is_training_record,
        read_checkpoint,
        sidecar_path,
    )

    if not isinstance(digest, str) or path.is_symlink() or not path.is_file():
        return False
    try:
        if file_sha256(path) != digest:
            return False
        state, cfg = read_checkpoint(path)
        check_state(state, cfg, source=str(path))
    except (OSError, BracketLensError):
        return False
    return cfg == recipe.train.model and is_training_record(sidecar_path(path))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_result(out: Path, result: SeedResult, recipe: Recipe) -> dict[str, Any]:
    """Save a finished seed: the checkpoint first, then its row, each atomically.

    ``out`` is a sweep's folder, so whatever lies at the seed's paths is the
    sweep's own: a damaged sidecar there is replaced like the rest.
    """
    from bracketlens.model.checkpoint import is_training_record, save_checkpoint, sidecar_path
    from bracketlens.model.transformer import BracketTransformer

    row = dict(result.row)
    seed = int(row["seed"])
    if result.state is not None:
        model = BracketTransformer(recipe.train.model)
        model.load_state_dict(result.state)
        path = checkpoint_path(out, seed)
        side = sidecar_path(path)
        if side.is_file() and not is_training_record(side):
            side.unlink()
        save_checkpoint(model, path, {"sweep_row": row}, force=True)
        row["checkpoint"] = str(path.relative_to(out))
        row["checkpoint_sha256"] = file_sha256(path)
    else:
        row["checkpoint"] = None
        row["checkpoint_sha256"] = None
    atomic_write_text(row_path(out, seed), json.dumps(row, indent=2))
    return row


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row as flat columns: a location and a confidence column per role."""
    roles = row.get("roles") or {}
    nested = ("variables", "passing", "combined", "closest")  # JSON text columns
    flat = {k: v for k, v in row.items() if k not in ("roles", *nested)}
    for name in ROLES:
        found = roles.get(name) or {}
        flat[name] = found.get("location")
        flat[f"{name}_confidence"] = found.get("confidence")
    for name in nested:
        flat[name] = json.dumps(row[name]) if row.get(name) is not None else None
    return flat


def write_table(out: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write every row as ``seeds.parquet`` (atomically), the form sweeps are released in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([flat_row(r) for r in rows], schema=_schema())
    path = out / TABLE
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def _schema() -> Any:
    """Fixed column types, so that a table of null verdicts still types them as strings."""
    import pyarrow as pa

    columns = [
        ("schema_version", pa.int32()),
        ("seed", pa.int64()),
        ("recipe", pa.string()),
        ("recipe_hash", pa.string()),
        ("version", pa.string()),
        ("device", pa.string()),
        ("steps", pa.int64()),
        ("accuracy", pa.float64()),
        ("near_miss_accuracy", pa.float64()),
        ("final_loss", pa.float64()),
        ("verdict", pa.string()),
        ("iia", pa.float64()),
        ("seconds", pa.float64()),
        ("reused", pa.bool_()),
        ("error", pa.string()),
        ("checkpoint", pa.string()),
        ("checkpoint_sha256", pa.string()),
    ]
    for name in ROLES:
        columns += [(name, pa.string()), (f"{name}_confidence", pa.float64())]
    # explain's variables, passing models, combined model and closest model, as JSON text
    columns += [(name, pa.string()) for name in ("variables", "passing", "combined", "closest")]
    return pa.schema(columns)
