"""Shared fixtures: seeding, the course reference files, read-only models."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bracketlens import BracketDataset, BracketTransformer, load_model

ARENA = Path(__file__).resolve().parents[2] / "shared" / "arena"
COURSE_WEIGHTS = ARENA / "brackets_model_state_dict.pt"
COURSE_DATA = ARENA / "brackets_data.json"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one of pytest-xdist's workers (one per core): one thread each, here and in
        # the command-line processes tests start, so that they do not oversubscribe
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def _minutes(item: pytest.Item) -> float:
    """A test's expected minutes: ``slow(minutes=N)``, 0 for a plain ``slow``, -1 for the rest."""
    mark = item.get_closest_marker("slow")
    return -1 if mark is None else float(mark.kwargs.get("minutes", 0))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest first, so that pytest-xdist's work stealing spreads the training-length
    # tests over the workers while the longest runs. A quick test goes second: a worker
    # always keeps the test after the one it runs, and the longest should not hold
    # another long one back until it ends.
    items.sort(key=_minutes, reverse=True)  # a stable sort: collection order among equals
    quick = next((i for i, item in enumerate(items) if _minutes(item) < 0), None)
    if quick is not None and quick > 1:
        items.insert(1, items.pop(quick))


@pytest.fixture(scope="session", autouse=True)
def _explain_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """explain's result store in a folder of the test session's, never the user's cache
    (command-line processes that tests start inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRACKETLENS_CACHE_DIR", str(tmp_path_factory.mktemp("explain-store")))
        yield


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - for third-party code on the legacy global RNG
    torch.manual_seed(0)


def _need_arena() -> None:
    if not COURSE_WEIGHTS.is_file() or not COURSE_DATA.is_file():
        pytest.skip(
            f"course reference files not found under {ARENA} (a fresh clone has no "
            "../shared/arena; CI provides it)"
        )


@pytest.fixture(scope="session")
def course_model() -> BracketTransformer:
    """The course checkpoint (read-only: do not modify in tests)."""
    _need_arena()
    return load_model(COURSE_WEIGHTS)


@pytest.fixture(scope="session")
def course_data() -> BracketDataset:
    """All 100,000 strings of the course data set."""
    _need_arena()
    return BracketDataset.from_json(COURSE_DATA)


@pytest.fixture(scope="session")
def bundled_model() -> BracketTransformer:
    """The default checkpoint shipped in the package (read-only)."""
    return load_model()


@pytest.fixture(scope="session")
def random_model() -> BracketTransformer:
    """A randomly initialised model: for tests that need no trained weights."""
    model = BracketTransformer()
    model.init_weights(seed=1)
    # larger weights than at initialisation, so that attention patterns are far from uniform
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith(("W_", "b_")):
                p.mul_(5.0)
    return model.eval().requires_grad_(False)
