"""Joining Ray: a dead or silent --address fails in one line in bounded time, --workers is local."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from bracketlens.cli import main
from bracketlens.errors import BracketLensError
from bracketlens.sweeps.cluster import check_address, host_port, init_ray

pytest.importorskip("ray")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_addresses_are_split_into_host_and_port():
    assert host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert host_port("ray://head.example:10001") == ("head.example", 10001)
    assert host_port("[::1]:6379") == ("::1", 6379)
    assert host_port("auto") is None and host_port("host:0") is None and host_port("h:x") is None


def test_a_dead_address_is_one_line_at_once_and_creates_nothing(capsys, tmp_path):
    out = tmp_path / "sw2"
    argv = ["seeds", "--models", "1", "--recipe", "tiny", "--steps", "20", "--out", str(out)]
    start = time.monotonic()
    code = main([*argv, "--address", f"127.0.0.1:{_closed_port()}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "the connection was refused; start one there (ray start --head)" in err
    assert elapsed < 5.0 and not out.exists()


def test_a_port_that_never_answers_as_ray_times_out(tmp_path):
    with socket.socket() as listener:  # accepts the TCP connection, then says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(BracketLensError, match=r"no answer from the Ray cluster .* within 3 s"):
            check_address(address, timeout=3.0)
        assert time.monotonic() - start < 6.0


class _FakeRay:
    """Records ray.init's arguments and, as Ray does, installs its own SIGTERM handler."""

    def __init__(self):
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(kwargs)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_workers_start_a_ray_of_their_own_and_keep_the_commands_sigterm_handler():
    ray = _FakeRay()

    def ours(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        init_ray(ray, 3, None)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)
    (call,) = ray.calls
    assert call["address"] == "local" and call["num_cpus"] == 3  # never a cluster found on disk
    assert call["log_to_driver"] is False and call["logging_level"] >= 40  # ERROR and above
    init_ray(ray, 1, "10.0.0.1:6379", debug=True)
    assert ray.calls[-1] == {"address": "10.0.0.1:6379", "log_to_driver": True}
