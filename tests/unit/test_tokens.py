import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bracketlens import BracketLensError, decode, tokenize
from bracketlens.data.tokens import END, N_CTX, PAD, START, open_proportion

parens = st.text(alphabet="()", max_size=40)


def test_layout_start_parens_end_pad():
    toks = tokenize(["()", "(()"])
    assert toks.tolist() == [[START, 3, 4, END, PAD], [START, 3, 3, 4, END]]
    assert toks.dtype == torch.int64


def test_single_string_and_empty_string():
    assert tokenize("").tolist() == [[START, END]]
    assert tokenize("(").shape == (1, 3)


def test_pad_to_given_length():
    toks = tokenize(["()"], pad_to=N_CTX)
    assert toks.shape == (1, 42)
    assert (toks[0, 4:] == PAD).all()


@given(st.lists(parens, min_size=1, max_size=20))
def test_round_trip(strings):
    assert decode(tokenize(strings)) == strings
    assert decode(tokenize(strings, pad_to=N_CTX)[0]) == strings[0]


@given(st.lists(parens, min_size=1, max_size=10))
def test_open_proportion_matches_count(strings):
    got = open_proportion(tokenize(strings))
    want = torch.tensor([s.count("(") / max(len(s), 1) for s in strings])
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("strings", "message"),
    [
        (["(()", "(a)"], r"string 1 '\(a\)' has 'a' at position 1"),
        (["(]"], r"has '\]' at position 1"),
        (["()", "(é"], r"has 'é' at position 1"),
        (["(" * 41], r"41 parens; the model reads at most 40"),
    ],
)
def test_bad_input_names_the_problem(strings, message):
    with pytest.raises(BracketLensError, match=message):
        tokenize(strings)


def test_pad_to_too_short_or_too_long():
    with pytest.raises(BracketLensError, match="too short"):
        tokenize(["(())"], pad_to=5)
    with pytest.raises(BracketLensError, match="context of 42"):
        tokenize(["()"], pad_to=43)
