"""A stage that reads only the model and the strings, run in a child process beside the others.

``report`` runs ``discover``'s stage, which needs nothing the analysis computes.
On a machine with a second core it runs in a forked child while the parent runs
the analysis: the command then takes about the longer of the two instead of their
sum. The CPU time is the same, and so is the result. :func:`in_two_shares` runs
work of independent items (``explain``'s variables) in two processes the same way:
a child and this one take the items one at a time from a shared counter.

Fork, not spawn: the child starts with the model and the strings already in
memory, and pays no second start-up. GNU OpenMP's thread pool does not survive a
fork (a child that enters a parallel region with the parent's pool hangs), so the
child sets one intra-op thread before any torch work, and runs everything inline.

Where a fork is not safe or gains nothing, the work runs in this process when its
result is asked for: one usable core, a platform without fork (Windows, and macOS,
where forked system frameworks are unsafe), a model on an accelerator (CUDA does
not survive a fork), or a daemonic process (which may not have children).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import IO, Any, Generic, TypeVar

import torch

from bracketlens.errors import BracketLensError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent thread ends


class Beside(Generic[T]):
    """``fn(*args, **kwargs)``, started now in a child where that is safe; :meth:`result`
    waits for it. Use as a context manager: leaving the block stops a child whose result
    was never asked for (the caller failed). ``device``: the model's (None: the caller
    runs in parallel already, and the work runs here)."""

    def __init__(self, fn: Callable[..., T], *args: Any, device: str | None = "cpu", **kwargs: Any):
        self._call = (fn, args, kwargs)
        self._process: Any = None
        self._receive: Connection | None = None
        if device is not None and forkable(device):
            context = multiprocessing.get_context("fork")
            receive, send = context.Pipe(duplex=False)
            self._process = context.Process(target=_child, args=(send, fn, args, kwargs),
                                            daemon=True)  # fmt: skip
            with warnings.catch_warnings():
                # Python 3.12+ warns on forking a process with threads (torch's OpenMP
                # pool); the child takes no lock those threads hold: it runs single-threaded
                warnings.simplefilter("ignore", DeprecationWarning)
                self._process.start()
            send.close()
            self._receive = receive
            # the child has a core of its own now: the parent's intra-op threads yield it
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._threads - 1))

    @property
    def in_child(self) -> bool:
        """Whether the work runs in a child process (False: here, when asked for)."""
        return self._process is not None

    def result(self) -> T:
        """The work's value; the child's error, raised here; inline work runs now."""
        fn, args, kwargs = self._call
        if self._process is None:
            return fn(*args, **kwargs)
        assert self._receive is not None
        try:
            kind, value = pickle.loads(self._receive.recv_bytes())
        except EOFError:
            self._process.join()
            code = self._process.exitcode
            self._stop()
            raise BracketLensError(
                f"the worker running {getattr(fn, '__name__', 'a stage')} stopped without a "
                f"result (exit code {code}; out of memory?); run on one core "
                "(taskset -c 0 ...) to run it in this process"
            ) from None
        finally:
            self._receive.close()
        self._stop()
        if kind == "error":
            raise value
        if kind == "crash":
            raise RuntimeError(f"the worker running {fn.__name__} failed:\n{value}")
        return value

    def __enter__(self) -> Beside[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None:  # never asked for: the caller is failing
            self._process.terminate()
            self._stop()

    def _stop(self) -> None:
        """Reap the child; the parent's threads are its own again."""
        self._process.join()
        self._process = None
        torch.set_num_threads(self._threads)


def forkable(device: str = "cpu") -> bool:
    """Whether a forked child may run torch work beside this process, and has a core to."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return (
        sys.platform == "linux"
        and cores >= 2
        and device == "cpu"
        and not multiprocessing.current_process().daemon
    )


def _child(send: Connection, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: end at once
    _end_with_parent()
    torch.set_num_threads(1)  # before any torch work: see the module docstring
    # streams of its own: a thread of the parent (the progress spinner) may have held the
    # parent's stream locks at the fork, and no thread here would ever release them
    sys.stdout, sys.stderr = _own(sys.__stdout__), _own(sys.__stderr__)
    try:
        message: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except BracketLensError as error:
        message = ("error", error)
    except Exception:
        message = ("crash", traceback.format_exc())
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        payload = pickle.dumps(("crash", traceback.format_exc()))
    try:
        send.send_bytes(payload)
    except BrokenPipeError:  # the parent stopped waiting
        pass
    finally:
        send.close()


def _end_with_parent() -> None:
    """Have the kernel send this process SIGKILL when its parent ends (Linux), however it ends.

    The parent stops the child on any exception, SIGTERM included; this covers a
    parent killed outright (SIGKILL, out of memory), which runs no cleanup at all.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not glibc, or no prctl: the parent's cleanup remains
        return
    if os.getppid() == 1:  # the parent ended before the request took effect
        os._exit(1)


def _own(stream: IO[str] | None) -> IO[str]:
    """A new text stream on a copy of ``stream``'s file descriptor (or on /dev/null)."""
    try:
        return open(os.dup(stream.fileno()), "w", buffering=1)  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # no stream, or not on a descriptor
        return open(os.devnull, "w")


A = TypeVar("A")
B = TypeVar("B")


def in_two_shares(
    fn: Callable[[list[A]], list[B]],
    items: Sequence[A],
    cost: Callable[[A], float] | None = None,
    device: str | None = "cpu",
) -> list[B]:
    """``fn`` over ``items`` (one result per item, in order), in two processes at once: a
    forked child (:class:`Beside`) and this one each take the next item not yet taken until
    none is left, so neither waits while the other still has a queue.

    ``cost`` (a rough estimate; None: the items' own order) orders the taking, the largest
    first, so that the last item taken is a short one. Both processes run their items at one
    thread: an item's rounding is then the same whichever process runs it, and the results
    are those of ``fn(items)`` at one thread wherever each item's result depends only on
    that item. An error in either process stops the other from taking more and is raised
    here. Where no fork is safe (:func:`forkable`), or ``device`` is None (the caller runs
    in parallel already), every item runs here.
    """
    if len(items) < 2 or device is None or not forkable(device):
        return fn(list(items))
    order = list(range(len(items)))
    if cost is not None:
        costs = [cost(item) for item in items]
        order.sort(key=lambda i: -costs[i])
    taken = multiprocessing.get_context("fork").Value("q", 0)  # the next index into order

    def take_until_done() -> list[tuple[int, B]]:
        done = []
        while (k := _take(taken, len(order))) is not None:
            (value,) = fn([items[order[k]]])
            done.append((order[k], value))
        return done

    @functools.wraps(fn)  # the worker's errors name fn
    def child() -> list[tuple[int, B]]:
        try:
            return take_until_done()
        except BaseException:
            with taken.get_lock():  # the parent takes no more: the error is raised there
                taken.value = len(order)
            raise

    out: list[Any] = [None] * len(items)
    with Beside(child, device=device) as worker:
        torch.set_num_threads(1)  # as the child's: see the docstring (Beside restores it)
        for i, value in [*take_until_done(), *worker.result()]:
            out[i] = value
    return out


def _take(taken: Any, n: int) -> int | None:
    """The next index of ``n`` that no process has taken yet (None: all are)."""
    with taken.get_lock():
        k = int(taken.value)
        if k >= n:
            return None
        taken.value = k + 1
    return k
