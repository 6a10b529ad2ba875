"""The total elevation walkthrough notebook runs top to bottom and is committed without outputs."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from bracketlens.model.checkpoint import bundled_weights_path
from tests.conftest import COURSE_DATA, COURSE_WEIGHTS

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "total_elevation_circuit.ipynb"
KERNEL = "python3"
NEEDS_DEV = "needs the dev extra: pip install -e '.[dev]'"
# appended to the in-memory copy only: which interpreter did the kernel run?
PROBE = "import sys\nprint('kernel prefix:', sys.prefix)"


def _resolved_argv0(argv: list[str]) -> str:
    """The executable jupyter_client launches: it maps a bare python/python3 to sys.executable."""
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return sys.executable if argv[0] in bare else argv[0]


def _spec_argv0() -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return _resolved_argv0(KernelSpecManager().get_kernel_spec(KERNEL).argv)
    except NoSuchKernel:
        return None


def _pin_kernel_to_this_python(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """Make the ``python3`` kernel spec launch this interpreter (e.g. over a user-level spec)."""
    if _spec_argv0() == sys.executable:
        return
    spec_dir = where / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bracketlens tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(where))  # searched before user and env dirs
    assert _spec_argv0() == sys.executable


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed in memory from ``notebooks/``; a copy is written under tmp only."""
    nbformat = pytest.importorskip("nbformat", reason=NEEDS_DEV)
    nbclient = pytest.importorskip("nbclient", reason=NEEDS_DEV)
    pytest.importorskip("ipykernel", reason=NEEDS_DEV)
    if not COURSE_WEIGHTS.is_file() and not bundled_weights_path().is_file():
        pytest.skip("no model to run the notebook on: no course checkpoint, no bundled default")
    before = _digest(NOTEBOOK)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    tmp = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _pin_kernel_to_this_python(monkeypatch, tmp / "jupyter")
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        try:
            client.execute()
        finally:
            nbformat.write(nb, tmp / NOTEBOOK.name)  # for reading after a failure
    assert _digest(NOTEBOOK) == before, "executing must not touch the committed notebook"
    return nb


def _text(nb) -> str:
    """Everything the code cells printed (stdout)."""
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stdout"
    )


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no output matching {pattern!r}"
    return float(match.group(1))


def test_notebook_is_stripped():
    nb = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code, "the notebook has code cells"
    for i, cell in enumerate(code):
        assert cell["outputs"] == [], f"code cell {i} has stored outputs; clear them"
        assert cell["execution_count"] is None, f"code cell {i} has an execution count"
    assert nb["metadata"]["kernelspec"]["name"] == KERNEL


def test_notebook_runs_in_this_interpreter(executed):
    errors = [
        o for cell in executed.cells for o in cell.get("outputs", []) if o.output_type == "error"
    ]
    assert errors == []
    assert f"kernel prefix: {sys.prefix}\n" in _text(executed)


def test_notebook_shows_figures(executed):
    figures = [
        out
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.output_type == "display_data" and any("plotly" in k for k in out.data)
    ]
    assert len(figures) >= 8  # histograms, scatters, attention, neurons, cosines


def test_notebook_prints_the_circuit(executed):
    text = _text(executed)
    assert _number(r"accuracy (\d+\.\d+)%", text) > 90
    cos = _number(r"cos\(v_L, v_R\) = (-?\d\.\d+)", text)
    assert -1 <= cos <= 1
    assert re.search(r"^\[(holds|FAILS)\] ", text, re.MULTILINE), "the summary prints the claims"


def test_notebook_numbers_on_the_course_model(executed):
    if not (COURSE_WEIGHTS.is_file() and COURSE_DATA.is_file()):
        pytest.skip("the course checkpoint and data are not under ../shared/arena")
    text = _text(executed)
    assert "(the course's roles)" in text
    assert _number(r"cos\(v_L, v_R\) = (-?\d\.\d+)", text) == pytest.approx(-0.9974, abs=5e-4)
    assert _number(r"query 0 -> key 1: (\d\.\d+)", text) == pytest.approx(0.5, abs=0.1)
    assert _number(r"MLP 0: mean squared cos\(v_R, W_in\) = (\d\.\d+)", text) == pytest.approx(
        0.1239, abs=2e-3
    )
    assert _number(r"MLP 1: mean squared cos\(v_R, W_in\) = (\d\.\d+)", text) == pytest.approx(
        0.1301, abs=2e-3
    )
    assert _number(r"a random direction: (\d\.\d+)", text) == pytest.approx(1 / 56, abs=3e-3)
    assert len(re.findall(r"^\[holds\] ", text, re.MULTILINE)) == 3


def test_notebook_shows_the_explorer(executed):
    """The last section's cell displays the explorer widget (anywidget)."""
    widgets = [
        out.data["application/vnd.jupyter.widget-view+json"]
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("display_data", "execute_result")
        and "application/vnd.jupyter.widget-view+json" in out.data
    ]
    assert len(widgets) == 1
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    explorer = state[widgets[0]["model_id"]]["state"]
    assert explorer["string"] == "(())"
    assert set(explorer["payload"]) >= {"config", "weights", "means", "roles"}
