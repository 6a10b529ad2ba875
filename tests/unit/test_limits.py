"""Ranges of seeds and sizes, and the argparse validators built on them."""

import argparse

import numpy as np
import pytest

from bracketlens.cli.support import int_range, n_strings_type, seed_type
from bracketlens.errors import BracketLensError
from bracketlens.limits import MAX_SEED, MAX_STRINGS, check_n_strings, check_seed


def test_seed_range_is_what_every_generator_accepts():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    assert check_seed(np.int64(5)) == 5
    np.random.seed(MAX_SEED)  # noqa: NPY002 - the legacy seeding is the narrowest user
    for bad in (-1, MAX_SEED + 1, 2**70, True, 1.5, "3"):
        with pytest.raises(BracketLensError, match="from 0 to 4,294,967,295"):
            check_seed(bad)


def test_n_strings_range():
    assert check_n_strings(MAX_STRINGS) == MAX_STRINGS
    with pytest.raises(BracketLensError, match="from 1 to 2,000,000; got 0"):
        check_n_strings(0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", "from 0 to 4,294,967,295; got -1"),
        (str(2**70), "got 1,180,591,620,717,411,303,424"),
        ("abc", "got 'abc'"),
        ("9" * 5000, "got '9999"),  # past Python's int-parsing digit limit
    ],
)
def test_seed_type_states_the_range(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        seed_type(text)


def test_int_range_accepts_the_bounds():
    parse = int_range(3, 5)
    assert [parse("3"), parse(" 5 "), parse("4")] == [3, 5, 4]
    assert n_strings_type("2000000") == MAX_STRINGS
    with pytest.raises(argparse.ArgumentTypeError, match="from 1 to 2,000,000"):
        n_strings_type(str(10**12))
