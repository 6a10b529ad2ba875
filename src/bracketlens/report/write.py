"""Write a report folder atomically: index.html, findings.json, figures/*.png.

The folder is built under a temporary name beside the target and moved into
place at the end, so a failure never leaves a half-written report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bracketlens.analysis import Analysis
from bracketlens.errors import BracketLensError
from bracketlens.jsonout import strict_dumps
from bracketlens.report.figures import Figure, all_figures
from bracketlens.report.render import GENERATOR_TAG, render_html

REPORT_FILES = ("index.html", "findings.json")
FIGURES = "figures"  # a folder of *.png
# what marks findings.json and index.html as a report's: a file is replaced only when it has it
WRITTEN_BY = "bracketlens report"
MAX_FINDINGS_BYTES = 2**28  # a report's findings.json is a few MB at most


def check_report_dir(out: str | os.PathLike[str]) -> None:
    """Refuse an ``--out`` that a report may not replace, before any work is done.

    A report replaces its whole folder, so ``out`` must be new, empty, or hold
    nothing but an earlier report (``index.html``, ``findings.json``,
    ``figures/*.png``); it must not be a link, the working folder or one above it;
    and both it and the folder it sits in must be writable.
    """
    out = Path(out)
    target = Path(os.path.abspath(out))
    if out.is_symlink():
        raise BracketLensError(f"{out} is a symbolic link; pass the folder it points to")
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:
        raise BracketLensError(
            f"--out {out} is the folder you are in (or holds it); a report replaces its whole "
            "folder, so name a new one, e.g. --out report"
        )
    _check_replaceable(out)
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise BracketLensError(f"folder {out} is not writable; choose another --out")
    parent = target.parent
    if not parent.is_dir():
        raise BracketLensError(f"folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BracketLensError(f"folder {parent} is not writable; choose another --out")


def _check_replaceable(out: Path) -> None:
    """Raise unless ``out`` is absent, empty, or holds only what a report writes."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BracketLensError(f"{out} exists and is not a folder; choose another --out")
    foreign = _foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise BracketLensError(
            f"{out} holds {shown}, which bracketlens did not write; a report replaces only a "
            "folder holding nothing but an earlier report: choose another --out"
        )


def _foreign_entries(out: Path) -> list[str]:
    """What in ``out`` a report does not write (all of it when findings.json is not a report's)."""
    entries = sorted(out.iterdir())
    if entries and not is_report_findings(out / "findings.json"):
        return [e.name for e in entries]
    page = out / "index.html"
    if page.exists() and not page.is_symlink() and page.is_file() and not is_report_page(page):
        return [page.name]
    foreign = []
    for entry in entries:
        if entry.is_symlink():
            foreign.append(entry.name)
        elif entry.name == FIGURES and entry.is_dir():
            foreign += [
                f"{FIGURES}/{f.name}"
                for f in sorted(entry.iterdir())
                if f.is_symlink() or not f.is_file() or f.suffix != ".png"
            ]
        elif entry.name not in REPORT_FILES or not entry.is_file():
            foreign.append(entry.name)
    return foreign


def is_report_findings(path: Path) -> bool:
    """Whether ``path`` is a findings.json that :func:`write_report` wrote.

    It must be a JSON object with the analysis schema's version and the report's
    marker; a file merely named findings.json is the user's.
    """
    import json

    from bracketlens.analysis import SCHEMA_VERSION

    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FINDINGS_BYTES:
            return False
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(payload, dict)
        and payload.get("schema_version") == SCHEMA_VERSION
        and payload.get("written_by") == WRITTEN_BY
    )


def is_report_page(path: Path) -> bool:
    """Whether ``path`` is an index.html that :func:`write_report` wrote (its generator tag)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return GENERATOR_TAG.encode() in head


def export_pngs(figures: list[Figure], folder: Path) -> str:
    """Export every figure as PNG in one kaleido session; return a note if it cannot."""
    try:
        import kaleido  # noqa: F401
        import plotly.io as pio
    except ImportError:
        return "PNG figures were not written: install kaleido (pip install kaleido) and a Chromium."
    folder.mkdir()
    try:
        pio.write_images(
            [f.figure for f in figures],
            [folder / f"{f.name}.png" for f in figures],
            width=1100,
            scale=1,
        )
    except Exception as e:  # kaleido reports a missing browser in several ways
        shutil.rmtree(folder, ignore_errors=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"PNG figures were not written: static export failed on this machine ({first})."
    return ""


def write_report(
    findings: Analysis,
    out: str | os.PathLike[str],
    *,
    png: bool = True,
    warnings: Sequence[str] = (),
) -> Path:
    """Write ``index.html``, ``findings.json`` and ``figures/*.png`` to ``out``.

    ``warnings`` (what :func:`bracketlens.data.sample.check_sample` says about the
    sample's size) appear in the page beside the numbers they qualify.
    """
    out = Path(out)
    check_report_dir(out)
    figures = all_figures(findings)
    flat = [fig for section in figures.values() for fig in section]
    tmp = new_folder_beside(out)
    try:
        note = export_pngs(flat, tmp / "figures") if png else "PNG export was turned off."
        payload = findings.to_json() | {"written_by": WRITTEN_BY}
        (tmp / "findings.json").write_text(strict_dumps(payload, indent=2))
        page = render_html(findings, figures, note, payload, warnings)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def new_folder_beside(out: Path) -> Path:
    """An empty hidden folder next to ``out``, with the permissions ``mkdir`` would give."""
    target = Path(os.path.abspath(out))
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)  # mkdtemp makes it 0700; reading the umask means setting it
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    return tmp


def swap_in(new: Path, out: str | os.PathLike[str]) -> None:
    """Move the folder ``new`` to ``out``, replacing an earlier report there atomically.

    Runs racing on the same ``out`` take turns on a lock held on the folder that
    holds it, so each check-then-rename is whole and the last run's report wins.
    What ``out`` holds is checked again under the lock: files the user put there
    while the analysis ran are never deleted.
    """
    out = Path(os.path.abspath(out))
    old = new.with_name(new.name + ".old")
    with _folder_lock(out.parent):
        _check_replaceable(out)
        if not out.exists():
            os.rename(new, out)
            return
        os.rename(out, old)
        try:
            os.rename(new, out)
        except BaseException:
            os.rename(old, out)  # put the earlier report back
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on a folder (no lock file); none where flock is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: renames there fail cleanly rather than race
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
