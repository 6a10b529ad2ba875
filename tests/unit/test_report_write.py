"""The report folder: never delete what we did not write; an atomic swap under races."""

import json
import os
import stat
import threading

import pytest

from bracketlens.analysis import SCHEMA_VERSION
from bracketlens.errors import BracketLensError
from bracketlens.report import write
from bracketlens.report.render import GENERATOR_TAG
from bracketlens.report.write import WRITTEN_BY, check_report_dir, new_folder_beside, swap_in


def _report(folder, tag="a", png=True):
    """A folder as write_report leaves it: marked findings.json and index.html."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(f"<html><head>{GENERATOR_TAG}</head>{tag}</html>")
    findings = {"schema_version": SCHEMA_VERSION, "written_by": WRITTEN_BY, "tag": tag}
    (folder / "findings.json").write_text(json.dumps(findings))
    if png:
        (folder / "figures").mkdir(exist_ok=True)
        (folder / "figures" / "x.png").write_text(tag)
    return folder


def test_users_files_are_never_deleted(tmp_path):
    out = _report(tmp_path / "report")
    (out / "notes.txt").write_text("mine")
    (out / "mydata").mkdir()
    with pytest.raises(BracketLensError, match=r"holds mydata, notes\.txt, which bracketlens did"):
        check_report_dir(out)
    new = _report(tmp_path / "new", "b")
    with pytest.raises(BracketLensError, match="did not write"):
        swap_in(new, out)
    assert (out / "notes.txt").read_text() == "mine" and (out / "mydata").is_dir()


def _tag(folder):
    return json.loads((folder / "findings.json").read_text())["tag"]


@pytest.mark.parametrize(
    "extra",
    ["figures/notes.txt", "figures/sub/x.png", "index.html/x"],
)
def test_anything_unexpected_inside_refuses(tmp_path, extra):
    out = _report(tmp_path / "report")
    if extra == "index.html/x":
        (out / "index.html").unlink()
        (out / "index.html").mkdir()
    target = out / extra
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine")
    with pytest.raises(BracketLensError, match="which bracketlens did not write"):
        check_report_dir(out)


def test_folder_without_findings_is_not_a_report(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("my web page")
    with pytest.raises(BracketLensError, match=r"holds index\.html"):
        check_report_dir(out)


def test_earlier_report_and_empty_folder_are_replaced(tmp_path):
    out = _report(tmp_path / "report", "old")
    swap_in(_report(tmp_path / ".new", "new", png=False), out)
    assert _tag(out) == "new" and not (out / "figures").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    swap_in(_report(tmp_path / ".new2", "x"), empty)
    assert _tag(empty) == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "report"]


def test_out_dot_and_its_parents_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(BracketLensError, match="is the folder you are in"):
            check_report_dir(out)


def test_unwritable_folder_is_refused_before_work(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(write.os, "access", lambda p, mode: False if p == out else real(p, mode))
    with pytest.raises(BracketLensError, match=f"folder {out} is not writable"):
        check_report_dir(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_for_real(tmp_path):
    out = tmp_path / "out"
    out.mkdir(mode=0o555)
    with pytest.raises(BracketLensError, match="is not writable"):
        check_report_dir(out)


def test_links_and_files_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(_report(tmp_path / "real"))
    with pytest.raises(BracketLensError, match="is not a folder"):
        check_report_dir(tmp_path / "f")
    with pytest.raises(BracketLensError, match="symbolic link"):
        check_report_dir(tmp_path / "link")


def test_folder_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        tmp = new_folder_beside(tmp_path / "report")
    finally:
        os.umask(umask)
    out = tmp_path / "report"
    swap_in(_report(tmp, "a"), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_concurrent_swaps_leave_one_complete_report(tmp_path):
    out = tmp_path / "report"
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            for i in range(25):
                new = new_folder_beside(out)
                _report(new, f"{tag}{i}", png=i % 2 == 0)
                swap_in(new, out)
        except BaseException as e:  # collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in "ABCD"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tag = _tag(out)
    assert (out / "index.html").read_text().endswith(f"{tag}</html>")  # both from the same run
    if (out / "figures").exists():
        assert (out / "figures" / "x.png").read_text() == tag
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no .report.*.old left


@pytest.mark.parametrize(
    ("findings", "page"),
    [
        ('{"x": 1}', "ours"),
        ("not json", "ours"),
        ('{"schema_version": 2}', "ours"),  # the schema without the report's marker
        ('{"schema_version": 1, "written_by": "bracketlens report"}', "ours"),
        ("ours", "hi"),  # our findings beside the user's page
        ("ours", "<html><head><title>mine</title></head></html>"),
    ],
)
def test_files_named_like_a_reports_are_the_users_unless_marked(tmp_path, findings, page):
    out = _report(tmp_path / "report", png=False)
    if findings != "ours":
        (out / "findings.json").write_text(findings)
    if page != "ours":
        (out / "index.html").write_text(page)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(BracketLensError, match="which bracketlens did not write"):
        check_report_dir(out)
    with pytest.raises(BracketLensError, match="which bracketlens did not write"):
        swap_in(_report(tmp_path / ".new", "new"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
