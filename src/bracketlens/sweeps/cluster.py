"""Ray for a sweep: check a cluster's address in bounded time, then join it or start a local one.

``--address`` is checked before anything is written to ``--out``: a TCP connection
to its port (a refused or silent port fails at once or after the timeout), then a
throwaway process that joins the cluster and leaves. The probe's output, Ray's
log lines included, is read here and never shown; it only says which of three
things went wrong: nothing listening, no answer in time, or a token refused.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bracketlens.errors import BracketLensError

CONNECT_TIMEOUT_S = 15.0
AUTH_HINT = (
    "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file "
    "~/.ray/auth_token) in this environment"
)
# what Ray prints (a C++ log line or a Python exception) when the cluster refuses the token
AUTH_MARKS = ("Unauthenticated", "InvalidAuthToken", "AuthenticationError")
_PROBE = (
    "import logging, sys, ray\n"
    "ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)\n"
    "ray.shutdown()\n"
    "print('joined', flush=True)\n"
)


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for other forms."""
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line error unless the Ray cluster at ``address`` can be joined.

    Takes at most about ``timeout`` seconds (plus a process start-up), whatever
    the address: a refused port fails at once, a silent one after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    target = host_port(address)
    if target is not None:
        _check_port(address, *target, timeout)
    _probe(address, deadline, timeout)


def _check_port(address: str, host: str, port: int, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise BracketLensError(
            f"no Ray cluster at --address {address}: the connection was refused; start one "
            "there (ray start --head) or pass the address `ray start` printed"
        ) from None
    except TimeoutError:
        raise BracketLensError(_silent(address, timeout)) from None
    except OSError as e:  # an unknown host, an unreachable network
        raise BracketLensError(
            f"cannot reach --address {address} ({e.strerror or e}); check the host name and port"
        ) from None


def _silent(address: str, timeout: float) -> str:
    return (
        f"no answer from the Ray cluster at --address {address} within {timeout:.0f} s; "
        "check the address and that its port is reachable from here"
    )


def _probe(address: str, deadline: float, timeout: float) -> None:
    """Join the cluster from a throwaway process, reading its output until a verdict."""
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert probe.stdout is not None
    seen = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(probe.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if sel.select(timeout=min(left, 0.5)):
                    chunk = probe.stdout.read1(65536)  # type: ignore[attr-defined]
                    seen += chunk
                    if any(mark.encode() in seen for mark in AUTH_MARKS):
                        raise BracketLensError(_refused_token(address))
                    if not chunk:  # the probe ended
                        break
            else:
                raise BracketLensError(_silent(address, timeout))
        if probe.wait() != 0 or b"joined" not in seen:
            raise BracketLensError(_failed(address, seen))
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        probe.stdout.close()


def _refused_token(address: str) -> str:
    return f"the Ray cluster at --address {address} refused to let this process join; {AUTH_HINT}"


def _failed(address: str, output: bytes) -> str:
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    last = lines[-1][:200] if lines else "no output"
    return (
        f"cannot join the Ray cluster at --address {address} ({last}); check the address, "
        "and that the cluster runs Ray "
        f"{_ray_version()} with bracketlens installed"
    )


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


def init_ray(ray: Any, workers: int, address: str | None, debug: bool = False) -> None:
    """Join ``address``, or start a Ray of ``workers`` CPUs of this process's own.

    ``address="local"`` makes Ray start its own instance whatever clusters run or
    once ran on this machine (``RAY_ADDRESS``, ``/tmp/ray/ray_current_cluster``):
    only ``--address`` joins one. A local Ray's workers inherit this process's
    environment, so they import the same bracketlens. Ray's log lines stay off
    the terminal unless ``debug``.
    """
    quiet: dict[str, Any] = {"log_to_driver": debug}
    if not debug:
        quiet["logging_level"] = logging.ERROR
    # ray.init installs a SIGTERM handler that exits at once; the command's own (which
    # stops the tasks and this Ray on the way out) is put back
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as e:
        raise BracketLensError(_failed(str(address), str(e).encode())) from None
    finally:
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGTERM, handler)
