"""SIGTERM ends a command as Ctrl-C does: children end with it, no temporary folder stays, 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bracketlens.cli import main
from bracketlens.report import write as write_module
from tests.procs import alive, children


def test_sigterm_during_the_write_leaves_no_temporary_folder(monkeypatch, tmp_path, capsys):
    class Analysis:
        def to_json(self):
            return {"schema_version": 2}

    def analysis(args, command, **kwargs):
        return Analysis(), []

    def render(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the report is being written
        return "<html></html>"

    monkeypatch.setattr("bracketlens.cli.commands._run_analysis", analysis)
    monkeypatch.setattr(write_module, "all_figures", lambda findings: {})
    monkeypatch.setattr(write_module, "render_html", render)
    monkeypatch.chdir(tmp_path)
    code = main(["report", "--no-png", "--search", "quick", "--out", "rep"])
    assert code == 143 and capsys.readouterr().err == "bracketlens: terminated\n"
    assert list(tmp_path.iterdir()) == []  # neither rep nor a hidden .rep.* folder
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main put the handler back


@pytest.mark.skipif(
    sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
    reason="the report's stages run in children only on Linux with two cores",
)
@pytest.mark.slow(minutes=1)
def test_sigterm_ends_the_reports_children_too(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "bracketlens.cli",
        "report",
        "--n",
        "1000",
        "--no-png",
        "--search",
        "quick",
    ]
    proc = subprocess.Popen(
        [*cmd, "--out", "rep"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not (started := children(proc.pid)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert started, "the report's child did not start within two minutes"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.decode().endswith("bracketlens: terminated\n"), err
    time.sleep(0.5)
    assert not any(alive(child) for child in started)
    assert list(tmp_path.iterdir()) == []
