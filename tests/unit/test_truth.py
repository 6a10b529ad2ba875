import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bracketlens import (
    FailureGroup,
    failure_groups,
    failure_types,
    is_balanced,
    is_balanced_tokens,
    tokenize,
)
from bracketlens.data.truth import failure_types_of

parens = st.text(alphabet="()", max_size=40)


def test_known_strings():
    assert is_balanced("") and is_balanced("()") and is_balanced("(()())")
    assert not is_balanced(")(") and not is_balanced("(()") and not is_balanced("())(")


def _direct_failures(s: str) -> tuple[bool, bool]:
    """Failure types by counting characters of every suffix directly."""
    suffixes = [s[i:] for i in range(len(s))]
    negative = any(x.count("(") > x.count(")") for x in suffixes)
    return s.count("(") != s.count(")"), negative


@settings(max_examples=2000)
@given(st.lists(parens, min_size=1, max_size=8))
def test_vectorized_checker_equals_for_loop(strings):
    toks = tokenize(strings)
    assert is_balanced_tokens(toks).tolist() == [is_balanced(s) for s in strings]


@settings(max_examples=2000)
@given(st.lists(parens, min_size=1, max_size=8))
def test_failure_types_agree_with_direct_count(strings):
    ft = failure_types(tokenize(strings))
    for i, s in enumerate(strings):
        elevation, negative = _direct_failures(s)
        assert bool(ft.total_elevation[i]) == elevation
        assert bool(ft.negative[i]) == negative
        assert failure_types_of(s).total_elevation == elevation
        assert failure_types_of(s).negative == negative


@settings(max_examples=500)
@given(parens)
def test_balanced_iff_no_failure(s):
    ft = failure_types_of(s)
    assert is_balanced(s) == (not ft.total_elevation and not ft.negative)


def test_groups_in_course_order():
    groups = failure_groups(tokenize(["(()", "())(()", "(((", "()"]))
    # "(()": unequal counts and suffix "(()" has more "(" -> both
    assert groups.tolist() == [
        FailureGroup.BOTH,
        FailureGroup.NEGATIVE_ONLY,
        FailureGroup.BOTH,
        FailureGroup.BALANCED,
    ]
    assert failure_groups(tokenize([")))"])).tolist() == [FailureGroup.ELEVATION_ONLY]
    assert FailureGroup.NEGATIVE_ONLY.label == "just neg failure"
    assert torch.equal(failure_groups(tokenize(["()"])), torch.tensor([3]))
