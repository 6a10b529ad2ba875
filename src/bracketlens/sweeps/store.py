"""A sweep's folder: one checkpoint and one JSON row per seed, and the Parquet table.

Layout of ``--out``::

    rows/seed-000042.json           the row (written last: it marks the seed finished)
    models/seed-000042.safetensors  the checkpoint, with its sidecar seed-000042.json
    seeds.parquet                   every row of the last run, one column per field

The per-seed files are the source of truth; the table is rebuilt from them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bracketlens.errors import BracketLensError
from bracketlens.sweeps.recipes import Recipe
from bracketlens.sweeps.task import ROLES, SeedResult, explain_available

TABLE = "seeds.parquet"


def prepare_out(out: str | os.PathLike[str]) -> Path:
    """Create ``out`` (and its two subfolders), refusing a file or an unwritable place."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BracketLensError(f"{out} is a file; choose a folder for --out")
    if not out.resolve().parent.is_dir():
        raise BracketLensError(f"folder {out.resolve().parent} does not exist; create it first")
    try:
        for sub in ("rows", "models"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BracketLensError(f"cannot write to {out} ({e.strerror}); choose another --out") from e
    return out


def row_path(out: Path, seed: int) -> Path:
    return out / "rows" / f"seed-{seed:06d}.json"


def checkpoint_path(out: Path, seed: int) -> Path:
    return out / "models" / f"seed-{seed:06d}.safetensors"


def reusable_row(out: Path, seed: int, recipe: Recipe) -> dict[str, Any] | None:
    """The stored row of ``seed`` if it can be reused as it is, marked ``"reused": true``.

    A row is reused only when its seed, recipe hash and bracketlens version match,
    it holds no error, its checkpoint is there, and it has a verdict unless
    ``explain`` is still absent; anything else is trained again.
    """
    from bracketlens import __version__

    try:
        row = json.loads(row_path(out, seed).read_text())
    except (OSError, ValueError):  # absent, unreadable or (by hand) corrupted: train again
        return None
    matches = (
        isinstance(row, dict)
        and row.get("seed") == seed
        and row.get("recipe_hash") == recipe.hash
        and row.get("version") == __version__
        and row.get("error") is None
        and checkpoint_path(out, seed).is_file()
        # a row without an `explain` verdict is measured again wherever explain can run
        and (row.get("verdict") is not None or not explain_available())
    )
    return row | {"reused": True} if matches else None


def write_result(out: Path, result: SeedResult, recipe: Recipe) -> dict[str, Any]:
    """Save a finished seed: the checkpoint first, then its row, each atomically."""
    from bracketlens.model.checkpoint import save_checkpoint
    from bracketlens.model.transformer import BracketTransformer

    row = dict(result.row)
    seed = int(row["seed"])
    if result.state is not None:
        model = BracketTransformer(recipe.train.model)
        model.load_state_dict(result.state)
        path = checkpoint_path(out, seed)
        save_checkpoint(model, path, {"sweep_row": row}, force=True)
        row["checkpoint"] = str(path.relative_to(out))
    else:
        row["checkpoint"] = None
    atomic_write_text(row_path(out, seed), json.dumps(row, indent=2))
    return row


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row as flat columns: a location and a confidence column per role."""
    roles = row.get("roles") or {}
    flat = {k: v for k, v in row.items() if k not in ("roles", "variables")}
    for name in ROLES:
        found = roles.get(name) or {}
        flat[name] = found.get("location")
        flat[f"{name}_confidence"] = found.get("confidence")
    flat["variables"] = json.dumps(row["variables"]) if row.get("variables") else None
    return flat


def write_table(out: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write every row as ``seeds.parquet`` (atomically), the form sweeps are released in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([flat_row(r) for r in rows], schema=_schema())
    path = out / TABLE
    fd, tmp = tempfile.mkstemp(prefix=f".{TABLE}.", dir=out)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
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
    ]
    for name in ROLES:
        columns += [(name, pa.string()), (f"{name}_confidence", pa.float64())]
    columns.append(("variables", pa.string()))  # explain's variables, as JSON text
    return pa.schema(columns)
