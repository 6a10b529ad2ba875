"""Seed sweeps end to end with the tiny recipe: Ray against in-process, resume, a killed worker.

Every test here trains (seconds per seed), so they are in the slow tier.
"""

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import bracketlens
from bracketlens.cli import main
from bracketlens.sweeps import Sweep, get_recipe, run_sweep
from tests.procs import command_line, descends, processes

pytest.importorskip("ray")
pytestmark = pytest.mark.slow(minutes=1)

SEEDS = ["--models", "2", "--seed-start", "0", "--recipe", "tiny"]
# all that may differ between two runs of a seed (safetensors orders its header as it likes)
VOLATILE = {"seconds", "reused", "checkpoint_sha256"}


def _seeds(capsys, out, *argv):
    code = main(["seeds", *SEEDS, "--out", str(out), *argv, "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def _stable(row):
    return {k: v for k, v in row.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """Two tiny seeds in-process, with Ray made unimportable (it must not be needed).

    The first attempt is interrupted (as by Ctrl-C) once seed 0 is written; the
    second finishes the sweep. Returns the folder and the second run's rows.
    """
    out = tmp_path_factory.mktemp("in_process") / "sweep"
    sweep = Sweep(range(2), get_recipe("tiny"), out)

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(sweep, on_row=interrupt)
        interrupted = sorted(p.name for p in (out / "rows").iterdir())
        rows = run_sweep(sweep).rows
    assert interrupted == ["seed-000000.json"]
    return out, rows


def test_ctrl_c_keeps_the_finished_seed(in_process):
    _, rows = in_process
    assert [r["reused"] for r in rows] == [True, False]


@contextlib.contextmanager
def _ray_lock(tmp_path_factory):
    """Hold a lock that pytest-xdist's workers share, so one Ray cluster runs at a time.

    Two clusters at once on 2 cores can starve the killed task's retry past its 300 s timeout.
    """
    base = tmp_path_factory.getbasetemp()
    # the test run's own folder, which its xdist workers share
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with (shared / "ray.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def one_ray_cluster(tmp_path_factory):
    """The test runs the only Ray cluster of the session's workers (see :func:`_ray_lock`)."""
    with _ray_lock(tmp_path_factory):
        yield


def _rows(out):
    return [json.loads((out / "rows" / f"seed-{s:06d}.json").read_text()) for s in range(2)]


def test_two_ray_workers_give_the_rows_of_one_process(
    in_process, tmp_path, capsys, monkeypatch, one_ray_cluster
):
    base, _ = in_process
    # a cluster named by the environment (or left on disk by `ray start`) is never joined
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    result = _seeds(capsys, tmp_path / "ray", "--workers", "2")
    assert [r["seed"] for r in result["rows"]] == [0, 1]
    assert all(r["error"] is None and r["reused"] is False for r in result["rows"])
    assert [_stable(r) for r in result["rows"]] == [_stable(r) for r in _rows(base)]
    table = pq.read_table(tmp_path / "ray" / "seeds.parquet").to_pylist()
    assert [r["seed"] for r in table] == [0, 1]
    assert table[1]["elevation_head"] == result["rows"][1]["roles"]["elevation_head"]["location"]


def test_resume_retrains_exactly_the_deleted_seed(in_process, tmp_path, capsys):
    base, _ = in_process
    out = tmp_path / "sweep"
    shutil.copytree(base, out)
    before = _rows(out)
    (out / "rows" / "seed-000000.json").unlink()
    result = _seeds(capsys, out)
    assert [r["reused"] for r in result["rows"]] == [False, True]
    assert [_stable(r) for r in result["rows"]] == [_stable(r) for r in before]
    assert _seeds(capsys, out)["summary"] == result["summary"]  # both reused now


def test_resume_with_other_steps_retrains_instead_of_reusing(in_process, tmp_path, capsys):
    base, (first, *_) = in_process
    out = tmp_path / "sweep"
    shutil.copytree(base, out)
    argv = ["seeds", "--models", "1", "--recipe", "tiny", "--steps", "61", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["reused"] for r in rows] == [False]
    assert rows[0]["recipe_hash"] != first["recipe_hash"] and rows[0]["steps"] == 61


def _task_processes(ancestor: int) -> list[int]:
    """Ray worker processes running a seed task, started (at any depth) by ``ancestor``."""
    return [
        pid
        for pid in processes()
        if command_line(pid).startswith(b"ray::bracketlens_seed") and descends(pid, ancestor)
    ]


def test_a_killed_worker_costs_only_a_retry_of_its_seed(tmp_path, one_ray_cluster):
    out = tmp_path / "sweep"
    # one seed on two workers: the retry needs no free worker, and no other seed competes for CPU
    cmd = [sys.executable, "-m", "bracketlens.cli", "seeds", "--models", "1", "--recipe", "tiny"]
    cmd += ["--steps", "120", "--workers", "2", "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (tasks := _task_processes(proc.pid)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert tasks, "no seed task started within 3 minutes"
        time.sleep(1.0)  # well inside the task: 120 steps take several seconds
        title = Path(f"/proc/{tasks[0]}/cmdline").read_bytes()
        assert title.startswith(b"ray::bracketlens_seed"), "the task ended before the kill"
        os.kill(tasks[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    rows = json.loads(stdout)["rows"]
    assert [r["seed"] for r in rows] == [0]
    assert rows[0]["error"] is None and rows[0]["accuracy"] is not None
    assert [p.name for p in (out / "rows").iterdir()] == ["seed-000000.json"]
    assert pq.read_table(out / "seeds.parquet").column("seed").to_pylist() == [0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    """A real Ray head node with token authentication on a free port: (address, its token).

    Its workers import this bracketlens; it is stopped by its own process id.
    """
    port, token = _free_port(), secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="bl-ray-", dir="/tmp")  # Ray's socket paths must be short
    src = str(Path(bracketlens.__file__).parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PYTHONPATH": path}
    ray = str(Path(sys.executable).with_name("ray"))
    cmd = [ray, "start", "--head", "--port", str(port), "--num-cpus", "1", "--block"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp]
    with _ray_lock(tmp_path_factory):
        yield from _running(cmd, env, port, token, temp)


def _running(cmd, env, port, token, temp):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "ray start --head ended"
        yield f"127.0.0.1:{port}", token
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _cli_seeds(out, address, env):
    cmd = [sys.executable, "-m", "bracketlens.cli", "seeds", "--models", "1", "--recipe", "tiny"]
    cmd += ["--out", str(out), "--address", address, "--json"]
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - start


def test_a_cluster_refusing_the_token_says_what_to_set(head_node, tmp_path):
    address, _ = head_node
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done, seconds = _cli_seeds(tmp_path / "sweep", address, env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "set RAY_AUTH_MODE=token and the cluster's token" in done.stderr
    assert seconds < 20 and not (tmp_path / "sweep").exists()


def test_a_sweep_on_a_real_cluster_gives_the_rows_of_one_process(in_process, head_node, tmp_path):
    base, _ = in_process
    address, token = head_node
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    done, _ = _cli_seeds(tmp_path / "sweep", address, env)
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr  # Ray's log lines stay off the terminal
    (row,) = json.loads(done.stdout)["rows"]
    assert row["error"] is None and row["device"] == "cpu"
    assert _stable(row) == _stable(_rows(base)[0])
