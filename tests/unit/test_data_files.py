"""Data files are checked (path, size, type, depth) before they are parsed whole."""

import json
import os

import pytest

from bracketlens.data import BracketDataset
from bracketlens.data.files import nesting_depth, read_json_list
from bracketlens.errors import BracketLensError
from bracketlens.limits import MAX_DATA_BYTES


def _load(path):
    return BracketDataset.from_json(path)


def test_folder_gets_its_own_message(tmp_path):
    with pytest.raises(BracketLensError, match="is a folder; pass the JSON file inside it"):
        _load(tmp_path)


def test_empty_list_and_empty_file(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.json").write_text("  \n")
    with pytest.raises(BracketLensError, match="holds no records"):
        _load(tmp_path / "a.json")
    with pytest.raises(BracketLensError, match="is empty"):
        _load(tmp_path / "b.json")


def test_deep_nesting_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BracketLensError, match="nests 100000 levels deep"):
        _load(path)


def test_too_large_file_is_refused_by_size_alone(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.truncate(300 * 2**20)  # sparse: no 300 MB written
    with pytest.raises(BracketLensError, match=r"is 300\.0 MiB; data files are limited to 64 MiB"):
        _load(path)


def test_not_a_list_and_not_utf8(tmp_path):
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "bin.json").write_bytes(b"[\xff\xfe]")
    with pytest.raises(BracketLensError, match="does not hold a JSON list"):
        _load(tmp_path / "obj.json")
    with pytest.raises(BracketLensError, match="not UTF-8"):
        _load(tmp_path / "bin.json")


def test_special_files_are_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(BracketLensError, match="not a regular file"):
        _load("/dev/zero")


def test_wrong_label_message_offers_what_the_cli_can_do(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([["()", False]]))
    with pytest.raises(BracketLensError, match="fix or remove that record") as err:
        _load(path)
    assert "load with validate=False" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("[]", 1),
        ('[["(", true]]', 2),
        ('[["[[[[", true]]', 2),  # brackets inside strings do not count
        ('[["a\\"[[", true]]', 2),  # nor after an escaped quote
        ('[{"a": [1]}]', 3),
        ("", 0),
    ],
)
def test_nesting_depth(text, depth):
    assert nesting_depth(text.encode()) == depth


def test_depth_is_carried_across_chunks(monkeypatch):
    import bracketlens.data.files as files

    monkeypatch.setattr(files, "_CHUNK", 3)
    assert files.nesting_depth(b'[["[[[", true], [[1]]]') == 3


def test_course_sized_file_reads(tmp_path):
    records = [["(())", True], [")(", False]] * 1000
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records))
    assert read_json_list(path, what="data file", expected="pairs") == records
    assert len(_load(path)) == 2000
    assert MAX_DATA_BYTES == 64 * 2**20
