import json

import pytest
import torch

from bracketlens import BracketDataset, BracketLensError, tokenize


def _pairs():
    return [("()", True), (")(", False), ("(())", True), ("((", False), ("", True)]


def test_attributes():
    data = BracketDataset.from_pairs(_pairs())
    assert len(data) == 5
    assert data.labels.tolist() == [True, False, True, False, True]
    assert data.tokens.shape == (5, 6)
    assert data.seq_length.tolist() == [2, 2, 4, 2, 0]
    torch.testing.assert_close(data.open_proportion, torch.tensor([0.5, 0.5, 0.5, 1.0, 0.0]))
    assert data.starts_open.tolist() == [True, False, True, True, False]


def test_labels_default_to_ground_truth():
    data = BracketDataset(["()", "(("])
    assert data.labels.tolist() == [True, False]


def test_slicing_returns_a_dataset_with_tight_padding():
    data = BracketDataset.from_pairs(_pairs())
    head = data[:2]
    assert isinstance(head, BracketDataset)
    assert head.strings == ["()", ")("]
    assert torch.equal(head.tokens, tokenize(["()", ")("]))
    assert data[torch.tensor([2])].strings == ["(())"]
    assert data[3].strings == ["(("]


def test_subsets():
    data = BracketDataset.from_pairs(_pairs())
    assert data.with_length(4).strings == ["(())"]
    assert data.with_start(")").strings == [")("]
    assert data.with_start("(").strings == ["()", "(())", "(("]
    with pytest.raises(BracketLensError, match="start character"):
        data.with_start("x")


def test_from_json(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([["()", True], ["((", False]]))
    data = BracketDataset.from_json(path)
    assert data.strings == ["()", "(("]
    assert "d.json" in data.description


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[["()", true', "not valid JSON"),
        ('{"a": 1}', "expected a list"),
        ('[["()", true], ["()"]]', "record 1"),
        ('[["()", true], ["((", 0]]', "record 1 has label 0; labels must be true or false"),
        ('[["()", true], [3, false]]', "record 1"),
        ('[["()", true], ["(x", false]]', "has 'x' at position 1"),
    ],
)
def test_malformed_files_name_the_first_bad_record(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BracketLensError, match=message):
        BracketDataset.from_json(path)


def test_contradicting_label_is_caught_unless_validation_is_off(tmp_path):
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps([["()", True], ["((", True]]))
    with pytest.raises(BracketLensError, match="record 1 '\\(\\(' is labelled True but is not"):
        BracketDataset.from_json(path)
    assert BracketDataset.from_json(path, validate=False).labels.tolist() == [True, True]


def test_missing_file(tmp_path):
    with pytest.raises(BracketLensError, match="does not exist"):
        BracketDataset.from_json(tmp_path / "nope.json")


def test_split_into_disjoint_seeded_halves():
    data = BracketDataset(["()", "(())", "((", "))", ")(", "()()", "(", ""])
    a, b = data.split(seed=1)
    assert len(a) == 4 and len(b) == 4
    assert sorted(a.strings + b.strings) == sorted(data.strings)
    assert data.split(seed=1)[0].strings == a.strings


def test_a_subset_keeps_its_strings_failure_types_and_groups():
    from bracketlens import evaluation_set
    from bracketlens.data.truth import failure_groups, failure_types

    data = evaluation_set(400, seed=3)
    groups = data.failure_groups  # computed once for the whole set, then sliced for subsets
    rows = torch.arange(len(data)) % 3 == 0
    assert torch.equal(data[rows].failure_groups, groups[rows])
    for subset in (data[rows], data[5:77], data[[4, 1, 9]]):
        fresh = failure_types(subset.tokens)
        assert torch.equal(subset.failure_types.negative, fresh.negative)
        assert torch.equal(subset.failure_types.total_elevation, fresh.total_elevation)
        assert torch.equal(subset.failure_groups, failure_groups(subset.tokens, fresh))
    with pytest.raises(BracketLensError, match="got 2 labels for 3 strings"):
        BracketDataset(["()", "(", ")"], [True, False])
