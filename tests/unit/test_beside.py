"""A stage run beside the others: the same value or error as inline, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from bracketlens import beside
from bracketlens.beside import Beside, forkable
from bracketlens.errors import BracketLensError

needs_fork = pytest.mark.skipif(not forkable(), reason="needs Linux and two usable cores")


def _matmul_sum(n: int) -> tuple[float, int, int]:
    x = torch.arange(n * n, dtype=torch.float64).reshape(n, n) / n
    return float((x @ x).sum()), os.getpid(), torch.get_num_threads()


def _refuse(message: str) -> None:
    raise BracketLensError(message)


def _break() -> None:
    raise KeyError("deep inside")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@needs_fork
def test_child_returns_the_value_inline_work_would():
    torch.ones(512, 512) @ torch.ones(512, 512)  # the parent's OpenMP pool is up before the fork
    with Beside(_matmul_sum, 300) as work:
        assert work.in_child
        value, pid, threads = work.result()
    assert value == _matmul_sum(300)[0]
    assert pid != os.getpid()
    assert threads == 1  # the child runs single-threaded (a forked OpenMP pool hangs)


@needs_fork
def test_parent_yields_a_thread_while_the_child_runs_and_gets_it_back():
    before = torch.get_num_threads()
    with Beside(_sleep, 0.2) as work:
        assert torch.get_num_threads() == max(1, before - 1)
        assert work.result() == 0.2
    assert torch.get_num_threads() == before


@needs_fork
def test_childs_bracketlens_error_is_raised_here_with_its_message():
    with Beside(_refuse, "use --n 10000") as work, pytest.raises(BracketLensError) as caught:
        work.result()
    assert str(caught.value) == "use --n 10000"


@needs_fork
def test_childs_crash_names_the_stage_and_keeps_its_traceback():
    with Beside(_break) as work, pytest.raises(RuntimeError) as caught:
        work.result()
    assert "_break failed" in str(caught.value)
    assert "KeyError: 'deep inside'" in str(caught.value)


@needs_fork
def test_child_killed_gives_a_clear_error_and_the_threads_back():
    before = torch.get_num_threads()
    with Beside(_die) as work, pytest.raises(BracketLensError, match="exit code -9"):
        work.result()
    assert torch.get_num_threads() == before


@needs_fork
def test_leaving_without_the_result_stops_the_child():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="the analysis failed"), Beside(_sleep, 60) as work:
        process = work._process
        raise RuntimeError("the analysis failed")  # before it asks for the result
    assert not process.is_alive()
    assert torch.get_num_threads() == before


def test_without_a_fork_the_work_runs_here_when_asked(monkeypatch):
    monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
    calls = []
    with Beside(lambda: calls.append(os.getpid()) or 7) as work:
        assert not work.in_child and calls == []
        assert work.result() == 7
    assert calls == [os.getpid()]


def test_no_device_runs_the_work_here():
    """device None: the caller runs in parallel already."""
    with Beside(os.getpid, device=None) as work:
        assert not work.in_child
        assert work.result() == os.getpid()


def test_no_fork_for_a_model_on_an_accelerator():
    assert not forkable("cuda")


@needs_fork
def test_pipeline_explanation_is_the_same_forked_or_inline(monkeypatch, bundled_model):
    """The report's explain stage gives the same findings with its search split over two
    processes as in this one alone (at one thread each: the rotation fits' rounding
    follows the thread count)."""
    from bracketlens.data import evaluation_set
    from bracketlens.pipeline import run

    data = evaluation_set(600, seed=3)
    threads = torch.get_num_threads()
    try:
        forked = run(bundled_model, data, stages=("explain",), causal_n=200)
        monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
        torch.set_num_threads(1)
        inline = run(bundled_model, data, stages=("explain",), causal_n=200)
    finally:
        torch.set_num_threads(threads)
    a, b = forked.explanation, inline.explanation
    assert a is not None and b is not None
    assert a.to_json() == b.to_json()
    for x, y in zip(a.variables, b.variables, strict=True):
        assert np.array_equal(x.correct, y.correct)


@needs_fork
def test_pipeline_interventions_are_the_same_in_a_child_or_here(monkeypatch, bundled_model):
    """The interventions, run in a child beside the circuit analyses and the explorer, give
    the findings they give in this process after those (at one thread in both)."""
    from bracketlens import pipeline
    from bracketlens.data import evaluation_set
    from bracketlens.pipeline import run

    data = evaluation_set(600, seed=3)
    stages = ("circuits", "interventions", "explorer")
    threads = torch.get_num_threads()
    in_child = []

    class Recorded(Beside):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            in_child.append(self.in_child)

    monkeypatch.setattr(pipeline, "Beside", Recorded)
    try:
        torch.set_num_threads(1)
        forked = run(bundled_model, data, stages=stages, causal_n=200)
        monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
        inline = run(bundled_model, data, stages=stages, causal_n=200)
    finally:
        torch.set_num_threads(threads)
    assert in_child == [True, False]
    assert forked.scrubs and forked.attribution_patching is not None
    # as text: an interval of a group with too few strings is NaN, unequal to itself
    assert json.dumps(forked.to_json()) == json.dumps(inline.to_json())
    assert forked.explorer is not None and inline.explorer is not None
    assert json.dumps(forked.explorer.to_json()) == json.dumps(inline.explorer.to_json())


@needs_fork
def test_output_is_neither_lost_nor_written_twice():
    """The parent's unflushed output is flushed before the fork (multiprocessing does; the
    child would write it again otherwise), and the child's prints, on streams of its own,
    reach the same stdout."""
    import subprocess
    import sys

    script = (
        "from bracketlens.beside import Beside\n"
        "print('before')\n"  # a pipe: block-buffered, still in the buffer at the fork
        "with Beside(print, 'from the child') as work:\n"
        "    work.result()\n"
        "print('after')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines() == ["before", "from the child", "after"]


def _squares_and_pids(items: list[int]) -> list[tuple[int, int]]:
    return [(i * i, os.getpid()) for i in items]


@needs_fork
def test_two_shares_give_each_items_result_in_order_from_two_processes():
    items = [5, 1, 4, 2, 3, 9]
    out = beside.in_two_shares(_slow_squares_and_pids, items, cost=float)
    assert [v for v, _ in out] == [i * i for i in items]
    pids = {pid for _, pid in out}
    assert len(pids) == 2 and os.getpid() in pids


def _slow_squares_and_pids(items: list[int]) -> list[tuple[int, int]]:
    time.sleep(0.05 * len(items))
    return _squares_and_pids(items)


def _sleep_items(items: list[float]) -> list[tuple[float, int, int]]:
    out = []
    for seconds in items:
        time.sleep(seconds)
        out.append((seconds, os.getpid(), torch.get_num_threads()))
    return out


@needs_fork
def test_two_shares_balance_items_of_very_different_costs_as_they_run():
    """With no cost estimate, one long item and eight short ones: the process that takes the
    long one takes at most one more, while the other runs the short ones (an even split by
    count would give it four more). The results are one process's, in item order."""
    before = torch.get_num_threads()
    items = [0.8] + [0.1] * 8
    out = beside.in_two_shares(_sleep_items, items)
    assert [seconds for seconds, _, _ in out] == items
    long_pid = out[0][1]
    assert sum(pid == long_pid for _, pid, _ in out) <= 2
    assert len({pid for _, pid, _ in out}) == 2
    assert {threads for _, _, threads in out} == {1}  # in both processes: the same rounding
    assert torch.get_num_threads() == before


PARENT = os.getpid()


def _refuse_in_child(items: list[float]) -> list[tuple[float, int, int]]:
    if os.getpid() != PARENT:
        raise BracketLensError("use --n 10000")
    return _sleep_items(items)


def _break_in_child(items: list[float]) -> list[tuple[float, int, int]]:
    if os.getpid() != PARENT:
        raise KeyError("deep inside")
    return _sleep_items(items)


@needs_fork
def test_two_shares_raise_the_childs_error_here_and_stop_taking_items():
    ran_here: list[float] = []

    def counted(items: list[float]) -> list[tuple[float, int, int]]:
        ran_here.extend(items if os.getpid() == PARENT else [])
        return _refuse_in_child(items)

    before = torch.get_num_threads()
    with pytest.raises(BracketLensError) as caught:
        beside.in_two_shares(counted, [0.05] * 40)
    assert str(caught.value) == "use --n 10000"
    assert len(ran_here) < 20  # the parent stopped once the child failed
    assert torch.get_num_threads() == before


@needs_fork
def test_two_shares_name_the_function_of_a_child_that_crashed():
    with pytest.raises(RuntimeError) as caught:
        beside.in_two_shares(_break_in_child, [0.05] * 10)
    assert "_break_in_child failed" in str(caught.value)
    assert "KeyError: 'deep inside'" in str(caught.value)


def test_two_shares_run_here_without_a_fork(monkeypatch):
    monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
    out = beside.in_two_shares(_squares_and_pids, [3, 1, 2], cost=float)
    assert out == [(9, os.getpid()), (1, os.getpid()), (4, os.getpid())]


@needs_fork
def test_explain_is_the_same_with_its_search_in_two_processes_or_one(monkeypatch, bundled_model):
    """explain splits its variables' searches, refits and confirmations over two processes:
    the verdict and every alignment are those of one process (at one thread each)."""
    from bracketlens.algorithms.explain import explain
    from bracketlens.algorithms.search import Search
    from bracketlens.data import evaluation_set

    data = evaluation_set(400, seed=5)
    search = Search.smoke()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the parent keeps one, the child gets the other
        split = explain(bundled_model, data, seed=1, search=search)
        monkeypatch.setattr(beside, "forkable", lambda device="cpu": False)
        torch.set_num_threads(1)
        alone = explain(bundled_model, data, seed=1, search=search)
    finally:
        torch.set_num_threads(threads)
    assert split.to_json() == alone.to_json()
