"""Fuzzing every command with careless and hostile inputs (Hypothesis), in process.

Data files are random bytes, random JSON shapes and random records; checkpoints
are random bytes, random config headers and a tiny random model with one tensor
broken; flags are random numbers, words and paths. For every case:

- the exit code is 0 or 2 (1 would be an internal error, and no input is marked
  as one);
- exit 2 prints exactly one line on stderr;
- no file outside ``--out`` (and a checkpoint's sidecar) is created, changed or
  deleted, and nothing at all on exit 2;
- ``--json`` output parses with NaN and Infinity refused.

Training is replaced by a tiny model handed back at once (what `train` writes, and
the checks before it, are what is fuzzed); so is a sweep's per-seed task, so that
`seeds` runs whole, into folders holding an earlier sweep, damaged sweep files, or
the user's files under a sweep's names, and is sometimes stopped by SIGTERM (exit
143, one line, the finished seeds kept, no temporary file left).

Files named like a report's or a sweep's but not written by bracketlens are never
allowed to change: a command may only refuse them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from safetensors.torch import save_file

from bracketlens import BracketTransformer, ModelConfig, is_balanced
from bracketlens.analysis import SCHEMA_VERSION
from bracketlens.cli import main
from bracketlens.model import train as train_module
from bracketlens.report.render import GENERATOR_TAG
from bracketlens.report.write import WRITTEN_BY
from bracketlens.sweeps import runner as runner_module
from bracketlens.sweeps.task import ROLES, SeedResult, base_row

TINY = ModelConfig(n_layers=2, n_heads=1, d_model=8, d_head=4, d_mlp=8)
ONE_LAYER = ModelConfig(n_layers=1, n_heads=1, d_model=8, d_head=4, d_mlp=8)  # too small to analyse
FAST = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=300, derandomize=False)

# --- strategies ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.sampled_from(["()", "(())", ")(", "((", "", "(" * 41])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
parens = st.text(alphabet="()", max_size=42)
labelled = st.lists(parens, min_size=1, max_size=80).map(
    lambda strings: [[s, is_balanced(s)] for s in strings]
)
records = st.lists(st.tuples(parens | scalars, st.booleans() | scalars).map(list), max_size=30)
data_files = st.one_of(
    labelled.map(json.dumps),  # half of the data files are valid
    st.one_of(
        st.binary(max_size=120),
        json_values.map(json.dumps),
        records.map(json.dumps),
        st.integers(1, 3000).map(lambda d: "[" * d + "]" * d),
        st.just('[["()", NaN]]'),
    ),
)
config_edits = st.dictionaries(
    st.sampled_from([*ModelConfig.__dataclass_fields__, "extra"]), json_values, max_size=2
)
broken_checkpoints = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=80), st.sampled_from([".pt", ".safetensors"])),
    st.tuples(st.just("header"), json_values.map(json.dumps) | st.text(max_size=12)),
    st.tuples(st.just("config"), config_edits),
    st.tuples(
        st.just("tensor"),
        st.sampled_from(["embed.W_E", "blocks.1.attn.W_Q", "unembed.b_U"]),
        st.sampled_from(["nan", "inf", "shape", "int", "drop", "string"]),
        st.sampled_from([".pt", ".safetensors"]),
    ),
)
checkpoints = st.just(("tiny",)) | broken_checkpoints  # half of the cases get a valid model
valid_checkpoints = st.sampled_from([("tiny",), ("tiny",), ("tiny",), ("one-layer",)])
hostile_numbers = st.integers(-3, 0).map(str) | st.sampled_from(
    ["x", "1e3", "", "0x10", str(2**32), str(2**70), str(10**12), "9" * 5000]
)
seeds = st.integers(0, 5).map(str) | hostile_numbers
sizes = st.integers(1, 120).map(str) | hostile_numbers
COMMANDS = ["predict", "evaluate", "evaluate", "analyze", "circuit", "report", "attack", "train"]
COMMANDS.append("seeds")
out_kinds = st.sampled_from(
    ["new", "empty", "earlier", "users", "file", "dot", "missing-parent", "data-collides",
     "imposter"]
)  # fmt: skip
# `seeds --out`: an earlier sweep, one with damaged files, or the user's files under its names
sweep_kinds = st.sampled_from(
    ["new", "sweep", "damaged-row", "damaged-checkpoint", "damaged-sidecar", "users-parquet",
     "users-row", "users-checkpoint", "foreign-manifest"]
)  # fmt: skip


@st.composite
def cases(draw):
    """(command, flags, data file content or None, checkpoint spec or None, out kind)."""
    command = draw(st.sampled_from(COMMANDS))
    flags: list[str] = []
    data = weights = None
    # a careless user (one mistake at most, often none) or a hostile one (anything goes)
    hostile = draw(st.booleans())
    checkpoints_ = checkpoints if hostile else valid_checkpoints
    sizes_ = sizes if hostile else st.integers(20, 120).map(str)
    seeds_ = seeds if hostile else st.integers(0, 5).map(str)
    data_files_ = data_files if hostile else labelled.map(json.dumps)
    if command in ("predict", "evaluate", "analyze", "circuit", "report", "attack"):
        weights = draw(checkpoints_)
        if draw(st.booleans()):
            flags.append("--allow-nonfinite")
    if command == "predict":
        strings = st.lists(parens, min_size=1, max_size=4) | st.lists(
            st.text(max_size=5), min_size=1
        )
        flags = draw(strings) + flags
        flags = ["--", *flags] if any(f.startswith("-") for f in flags) else flags
    if command in ("evaluate", "analyze", "circuit", "report"):
        if draw(st.booleans()):
            data = draw(data_files_)
        else:
            flags += ["--n", draw(sizes_)]
        if draw(st.booleans()):
            flags += ["--seed", draw(seeds_)]
    if command == "attack":
        flags += ["--budget", draw(st.integers(1, 300).map(str) | hostile_numbers)]
        flags += ["--top", draw(st.integers(-1, 5).map(str))]
        flags += ["--seed", draw(seeds_)] if draw(st.booleans()) else []
    if command == "train":
        flags += ["--seed", draw(seeds_)] if draw(st.booleans()) else []
        flags += ["--force"] if draw(st.booleans()) else []
        flags += ["--quiet"] if draw(st.booleans()) else []
    if command == "seeds" and hostile:
        flags += ["--models", draw(st.sampled_from(["0", "-1", "x", str(10**9)]))]
    elif command == "seeds":  # the per-seed task is a stand-in: see fast_training
        flags += ["--models", draw(st.sampled_from(["1", "2", "3"])), "--recipe", "tiny"]
    if command in ("predict", "evaluate", "analyze", "circuit", "attack", "seeds"):
        flags += ["--json"] if draw(st.booleans()) else []
    if command == "report":  # the verdict is not what this fuzzes: the light search
        flags += ["--no-png", "--search", "quick"]
    out_kind = draw(out_kinds if hostile else st.sampled_from(["new", "empty", "earlier"]))
    if command == "seeds":
        out_kind = draw(sweep_kinds)
        if not hostile and draw(st.booleans()):
            out_kind += "+sigterm"
    return command, flags, data, weights, out_kind


# --- building the files of one case --------------------------------------------------------


def _tiny_state() -> dict[str, torch.Tensor]:
    model = BracketTransformer(TINY)
    model.init_weights(seed=3)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _write_checkpoint(spec: tuple, folder: Path) -> Path:
    kind = spec[0]
    header = {"config": json.dumps(TINY.to_dict())}
    path = folder / "m.safetensors"
    if kind == "tiny":
        save_file(_tiny_state(), path, metadata=header)
    elif kind == "one-layer":
        model = BracketTransformer(ONE_LAYER)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, path, metadata={"config": json.dumps(ONE_LAYER.to_dict())})
    elif kind == "bytes":
        path = folder / f"m{spec[2]}"
        path.write_bytes(spec[1])
    elif kind == "header":
        save_file(_tiny_state(), path, metadata={"config": spec[1]})
    elif kind == "config":
        edited = {**TINY.to_dict(), **spec[1]}
        save_file(_tiny_state(), path, metadata={"config": json.dumps(edited)})
    else:
        _, key, how, suffix = spec
        state: dict[str, object] = dict(_tiny_state())
        tensor = state[key]
        assert isinstance(tensor, torch.Tensor)
        state[key] = {
            "nan": tensor.clone().fill_(float("nan")),
            "inf": tensor.clone().fill_(float("inf")),
            "shape": torch.zeros(3, 3),
            "int": tensor.to(torch.int64),
            "string": "abc",
        }.get(how, tensor)
        if how == "drop":
            del state[key]
        path = folder / f"m{suffix}"
        if suffix == ".pt":
            torch.save(state, path)
        elif how == "string":
            path = folder / "m.pt"
            torch.save(state, path)
        else:
            save_file(state, path, metadata=header)  # type: ignore[arg-type]
    return path


def _prepare_out(kind: str, command: str, folder: Path) -> tuple[str, list[Path]]:
    """The --out argument and the paths the command may write."""
    if command == "train":
        name = {"data-collides": "data.safetensors", "file": "old.safetensors"}.get(
            kind, "sub/none/m.safetensors" if kind == "missing-parent" else "m.safetensors"
        )
        if kind == "file":
            (folder / "old.safetensors").write_bytes(b"x")
        out = folder / name
        return str(out), [out, out.with_suffix(".json")]
    if command == "seeds":
        return _prepare_sweep(kind.removesuffix("+sigterm"), folder)
    out = folder / "report"
    if kind == "empty":
        out.mkdir()
    elif kind in ("earlier", "users"):
        out.mkdir()
        (out / "index.html").write_text(f"<html><head>{GENERATOR_TAG}</head></html>")
        findings = {"schema_version": SCHEMA_VERSION, "written_by": WRITTEN_BY}
        (out / "findings.json").write_text(json.dumps(findings))
        if kind == "users":
            (out / "notes.txt").write_text("mine")
    elif kind == "imposter":  # named like a report, but the user's: nothing may replace it
        out.mkdir()
        (out / "index.html").write_text("hi")
        (out / "findings.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
        return str(out), []
    elif kind == "file":
        out.write_text("a file")
    elif kind == "dot":
        return ".", []
    elif kind == "missing-parent":
        out = folder / "sub" / "none" / "report"
    return str(out), [out]


def _prepare_sweep(kind: str, folder: Path) -> tuple[str, list[Path]]:
    """A sweep's ``--out``: empty, an earlier sweep (damaged or not), or the user's files."""
    out = folder / "sweep"
    if kind == "new":
        return str(out), [out]
    if kind.startswith(("sweep", "damaged")):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["seeds", "--models", "2", "--recipe", "tiny", "--out", str(out)]) == 0
        damaged = {
            "damaged-row": out / "rows" / "seed-000001.json",
            "damaged-checkpoint": out / "models" / "seed-000000.safetensors",
            "damaged-sidecar": out / "models" / "seed-000001.json",
        }.get(kind)
        if damaged is not None:
            damaged.write_bytes(damaged.read_bytes()[:40])
        return str(out), [out]
    users = {
        "users-parquet": "seeds.parquet",
        "users-row": "rows/seed-000000.json",
        "users-checkpoint": "models/seed-000000.safetensors",
        "foreign-manifest": "sweep.json",
    }[kind]
    (out / users).parent.mkdir(parents=True)
    (out / users).write_text('{"mine": true}')
    return str(out), []  # the user's: a sweep may only refuse


def _snapshot(folder: Path) -> dict[str, str]:
    seen = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        seen[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def _strict_json(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"--json printed {name}")

    return json.loads(text, parse_constant=refuse)


def _run_case(case, root: Path) -> None:
    command, flags, data, weights, out_kind = case
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "data.json").write_text('[["()", true]]')  # a user's file that must survive
    argv = [command, *flags]
    if data is not None:
        path = folder / "input.json"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        argv += ["--data", str(path)]
    if weights is not None:
        argv += ["--weights", str(_write_checkpoint(weights, folder))]
    allowed: list[Path] = []
    if command in ("report", "train", "seeds"):
        out, allowed = _prepare_out(out_kind, command, folder)
        argv += ["--out", out]
    terminate = out_kind.endswith("+sigterm")
    if terminate:  # SIGTERM arrives while the last seed runs
        argv += ["--models", "2"]
        fake_seed = runner_module.run_seed

        def stopped(seed, recipe, device="cpu"):
            if seed == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return fake_seed(seed, recipe, device)

        runner_module.run_seed = stopped
    before = _snapshot(folder)
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        os.chdir(cwd)
        if terminate:
            runner_module.run_seed = fake_seed
    err = stderr.getvalue()
    if currently_in_test_context():  # the explicit cases below run outside Hypothesis
        event(f"{command} exit {code}")
    after = _snapshot(folder)
    stopped = terminate and code == 143
    if stopped:  # no JSON (a failed run prints none); what it wrote is checked as a run's
        assert err.endswith("bracketlens: terminated\n"), f"{argv}: {err!r}"
        assert not any(Path(k).name.startswith(".") for k in after), f"{argv} left {after}"
        code = 0
    assert code in (0, 2), f"{argv}: exit {code}: {err}"
    if code == 2:
        assert err.count("\n") == 1, f"{argv}: {err!r}"
        assert after == before, f"{argv} changed files though it failed"
    else:
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        inside = {
            k for k in changed if any((folder / k).is_relative_to(p) for p in allowed) or not k
        }
        assert changed == inside, f"{argv} touched {sorted(changed - inside)}"
        if "--json" in flags and not stopped:
            _strict_json(stdout.getvalue())


@pytest.fixture
def fast_training(monkeypatch):
    """`train` with a tiny model handed back at once (the real one takes minutes)."""

    def fake_train(cfg, **kwargs):
        model = BracketTransformer(TINY)
        model.init_weights(seed=cfg.seed)
        record = {"seed": cfg.seed, "steps": cfg.steps, "train_seconds": 0.0, "held_out": {}}
        return train_module.TrainResult(model=model.eval(), record=record)

    monkeypatch.setattr(train_module, "train", fake_train)

    def fake_seed(seed, recipe, device="cpu"):
        model = BracketTransformer(recipe.train.model)
        model.init_weights(seed=seed)
        roles = {name: {"location": "2.0", "confidence": 0.5} for name in ROLES}
        row = base_row(seed, recipe, device) | {"accuracy": 0.5, "roles": roles, "seconds": 0.0}
        row |= {"verdict": "none", "iia": 0.5, "variables": []}
        return SeedResult(row, model.state_dict())

    monkeypatch.setattr(runner_module, "run_seed", fake_seed)


@FAST
@given(case=cases())
def test_fuzz_every_command(case, tmp_path, fast_training):
    _run_case(case, tmp_path)


@pytest.mark.slow
@SLOW
@given(case=cases())
def test_fuzz_every_command_longer(case, tmp_path, fast_training):
    _run_case(case, tmp_path)


@pytest.mark.parametrize(
    "kind",
    ["new", "sweep", "damaged-row", "damaged-checkpoint", "damaged-sidecar", "users-parquet",
     "users-row", "users-checkpoint", "foreign-manifest", "sweep+sigterm", "new+sigterm"],
)  # fmt: skip
def test_every_sweep_folder_kind(kind, tmp_path, fast_training):
    flags = ["--models", "2", "--recipe", "tiny", "--json"]
    _run_case(("seeds", flags, None, None, kind), tmp_path)
