"""Benchmark: the section 3 analysis, naive course pipeline vs the single-pass engine vs the floor.

Usage: python benchmarks/analysis.py [--sizes 5000 100000 1000000] [--naive-max 5000]

Three pipelines compute the same numbers (LN fits, the unbalanced direction, the
attribution of every component at position 0, the pre-head direction, the
components and neurons feeding the elevation head at its read position, its
attention from query 0, the tally vectors, accuracy):

- naive: written below the way the course does it: one full ``run_with_cache``
  per step over the whole data set, every hook cached, ``[component, batch, seq,
  d_model]`` stacks and ``[batch, neuron, d_model]`` neuron outputs;
- ours: :func:`bracketlens.passes.gather` and the functions that finish from it;
- floor: one forward pass over the same length-sorted batches with hooks on the
  names the engine reads, keeping nothing.

Each pipeline runs in its own subprocess, so its peak RSS (``wait4``; tracemalloc
does not see torch's allocations) is its own; its time is the best of three runs
in that process up to 100,000 strings (one run at 1,000,000). The model is the course checkpoint
and the first N course strings when ``../shared/arena`` is present (else the
bundled model and generated strings); sizes above the course set's 100,000 are
generated with ``evaluation_set(N, seed=0)``. The naive pipeline runs only up to
``--naive-max`` (at 100,000 strings one full cache needs about 51 GiB).
Prints one row per (pipeline, N), the ratios, and how far ours and naive agree.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bracketlens.model.names import act_name

ARENA = Path(__file__).resolve().parents[1].parent / "shared" / "arena"
COURSE_WEIGHTS = ARENA / "brackets_model_state_dict.pt"
COURSE_DATA = ARENA / "brackets_data.json"
COURSE_N = 100_000
LAYER, HEAD, READ, TALLY = 2, 0, 1, 0  # the course's roles; any model runs with them


def load(n: int):
    from bracketlens import evaluation_set, load_model
    from bracketlens.data.dataset import BracketDataset

    if COURSE_WEIGHTS.exists() and COURSE_DATA.exists():
        model = load_model(COURSE_WEIGHTS)
        if n <= COURSE_N:
            return model, BracketDataset.from_json(COURSE_DATA)[:n]
        return model, evaluation_set(n, seed=0)
    return load_model(), evaluation_set(n, seed=0)


# ---------------------------------------------------------------- naive (the course's way)


def naive(model, data) -> dict[str, np.ndarray]:
    import einops
    import torch
    from sklearn.linear_model import LinearRegression

    from bracketlens.data.tokens import CLOSE, OPEN

    toks = data.tokens
    out: dict[str, np.ndarray] = {}

    def full_cache():  # every step of the course starts from one of these
        return model.run_with_cache(toks)[1]

    def ln_fit(cache, before, after, seq_pos):
        x, y = cache[before], cache[after]
        if seq_pos is None:
            x, y = einops.rearrange(x, "b s d -> (b s) d"), einops.rearrange(y, "b s d -> (b s) d")
        else:
            x, y = x[:, seq_pos], y[:, seq_pos]
        fit = LinearRegression().fit(x.numpy(), y.numpy())
        return fit, fit.score(x.numpy(), y.numpy())

    def out_by_components(cache):
        parts = [cache["hook_embed"] + cache["hook_pos_embed"]]
        for layer in range(model.cfg.n_layers):
            result = cache[act_name("result", layer)]
            parts += [result[:, :, h] for h in range(model.cfg.n_heads)]
            parts.append(cache[act_name("mlp_out", layer)])
        return torch.stack(parts)  # [component, batch, seq, d_model]

    with torch.no_grad():
        p_balanced = model(toks)[:, 0].softmax(-1)[:, 1]
        out["accuracy"] = np.array(float(((p_balanced > 0.5) == data.labels).float().mean()))
        last = model.cfg.n_layers - 1
        fit, r2 = ln_fit(full_cache(), act_name("resid_post", last), "ln_final.hook_normalized", 0)
        post = model.W_U[:, 0] - model.W_U[:, 1]
        direction = torch.from_numpy(fit.coef_.astype(np.float32)).T @ post
        out["final_r2"], out["direction"] = np.array(r2), direction.numpy()
        balanced = data.labels
        attribution = out_by_components(full_cache())[:, :, 0] @ direction
        attribution -= attribution[:, balanced].mean(-1, keepdim=True)
        out["attribution"] = attribution.numpy()
        fit1, r2_1 = ln_fit(
            full_cache(),
            act_name("resid_pre", LAYER),
            act_name("normalized", LAYER, "ln1"),
            READ,
        )
        ov = model.W_V[LAYER, HEAD] @ model.W_O[LAYER, HEAD]
        pre_head = torch.from_numpy(fit1.coef_.astype(np.float32)).T @ (ov @ direction)
        out["read_r2"], out["pre_head_direction"] = np.array(r2_1), pre_head.numpy()
        n_before = 1 + LAYER * (model.cfg.n_heads + 1)
        read = out_by_components(full_cache())[:n_before, :, READ] @ pre_head
        read -= read[:, balanced].mean(-1, keepdim=True)
        out["components_read"] = read.numpy()
        opens = data.starts_open
        cache = full_cache()
        neurons = []
        for layer in range(LAYER):
            post_acts = cache[act_name("post", layer)][:, READ]  # [batch, neuron]
            by_neuron = einops.einsum(
                post_acts, model.W_out[layer], "b n, n d -> b n d"
            )  # [batch, neuron, d_model]
            neurons.append((by_neuron @ pre_head)[opens])
        out["neurons"] = torch.stack(neurons).numpy()
        del cache
        pattern = full_cache()[act_name("pattern", LAYER)][:, HEAD]
        out["attention_from_0"] = pattern[opens, 0].mean(0).numpy()
        fit0, _ = ln_fit(
            full_cache(), "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_normalized", None
        )
        coef0 = torch.from_numpy(fit0.coef_.astype(np.float32))
        ov0 = model.W_V[0, TALLY] @ model.W_O[0, TALLY]
        v_left, v_right = coef0 @ model.W_E[OPEN] @ ov0, coef0 @ model.W_E[CLOSE] @ ov0
        out["tally_cosine"] = np.array(float(torch.cosine_similarity(v_left, v_right, dim=0)))
    return out


# ---------------------------------------------------------------- ours (the engine)


def ours(model, data) -> dict[str, np.ndarray]:
    import torch

    from bracketlens.attribution.directions import unbalanced_direction_post_ln
    from bracketlens.circuits.elevation import Roles, elevation_from_pass, gather_for

    roles = Roles(LAYER, HEAD, READ, TALLY)
    gathered = gather_for(model, data, roles)
    fit = gathered.final_fit()
    direction = fit.pull_back(unbalanced_direction_post_ln(model))
    attribution = gathered.components_at_0(model, data.tokens, direction).centred(data.labels)
    elevation = elevation_from_pass(model, data, roles, gathered)
    return {
        "accuracy": np.array(gathered.evaluation(data).accuracy),
        "final_r2": np.array(fit.r2),
        "direction": direction.numpy(),
        "attribution": attribution.values.numpy(),
        "read_r2": np.array(elevation.ln_fit_r2),
        "pre_head_direction": elevation.pre_head_direction.numpy(),
        "components_read": elevation.components.values.numpy(),
        "neurons": torch.stack([elevation.neuron_contributions[k] for k in range(LAYER)]).numpy(),
        "attention_from_0": elevation.attention_from_0.numpy(),
        "tally_cosine": np.array(elevation.tally.cosine),
    }


# ---------------------------------------------------------------- floor


def floor(model, data) -> dict[str, np.ndarray]:
    import torch

    from bracketlens.model.predict import iter_batches

    names = [act_name("resid_pre", LAYER), act_name("normalized", LAYER, "ln1")]
    names += [act_name("pattern", LAYER), "ln_final.hook_normalized"]
    names += [act_name("resid_post", model.cfg.n_layers - 1)]
    for layer in range(model.cfg.n_layers):
        names += [act_name("z", layer), act_name("post", layer)]
    cache: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        cache[hook.name] = act  # replaced by the next batch: nothing accumulates

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, keep) for name in names]):
        for _, tokens in iter_batches(data.tokens):
            model(tokens)
    return {}


PIPELINES = {"naive": naive, "ours": ours, "floor": floor}


def worker(pipeline: str, n: int, out: str, repeat: int) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model, data = load(n)
    # imports outside the clock: every pipeline pays them once, before any work
    for module in ("bracketlens.circuits.elevation", "bracketlens.passes", "einops", "sklearn"):
        importlib.import_module(module)

    # best of a few runs where they are cheap (as timeit does): the first run of a
    # fresh process also pays one-off costs (allocator, page faults, lazy init)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        numbers = PIPELINES[pipeline](model, data)
        times.append(time.perf_counter() - start)
    np.savez(out, seconds=np.array(min(times)), **numbers)


def run(pipeline: str, n: int, tmp: str) -> tuple[float, float, dict[str, np.ndarray]]:
    """(seconds, peak RSS in MiB, numbers) of one pipeline in a fresh process."""
    out = os.path.join(tmp, f"{pipeline}-{n}.npz")
    repeat = 3 if n <= 100_000 else 1
    cmd = [sys.executable, __file__, "--worker", pipeline, "--n", str(n), "--out", out]
    cmd += ["--repeat", str(repeat)]
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{pipeline} at N={n} failed (exit {os.waitstatus_to_exitcode(status)})")
    with np.load(out) as f:
        numbers = {k: f[k] for k in f.files}
    return float(numbers.pop("seconds")), usage.ru_maxrss / 1024, numbers  # KiB on Linux


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest difference relative to the largest magnitude, per number."""
    return {
        k: float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-12))
        for k in sorted(set(a) & set(b))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000, 1_000_000])
    parser.add_argument("--naive-max", type=int, default=5000)
    parser.add_argument("--worker", choices=list(PIPELINES))
    parser.add_argument("--n", type=int)
    parser.add_argument("--out")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.out, args.repeat)
        return
    rows: list[dict[str, object]] = []
    summary: dict[object, object] = {}
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            result = {}
            for pipeline in ("naive", "ours", "floor"):
                if pipeline == "naive" and n > args.naive_max:
                    continue
                seconds, peak, numbers = run(pipeline, n, tmp)
                result[pipeline] = (seconds, peak, numbers)
                rows.append(
                    {
                        "n": n,
                        "pipeline": pipeline,
                        "seconds": round(seconds, 2),
                        "peak_rss_mib": round(peak),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            t_ours, m_ours, num_ours = result["ours"]
            entry = {
                "ours_over_floor_time": round(t_ours / result["floor"][0], 2),
                "ours_peak_rss_mib": round(m_ours),
            }
            if "naive" in result:
                t_naive, m_naive, num_naive = result["naive"]
                entry |= {
                    "naive_over_ours_time": round(t_naive / t_ours, 1),
                    "naive_over_ours_peak_rss": round(m_naive / m_ours, 1),
                    "max_relative_difference": agreement(num_ours, num_naive),
                }
            summary[n] = entry
            peaks[n] = m_ours
    ours = sorted(peaks.items())
    if len(ours) >= 2:  # memory per extra string: kept slices, not [neuron, d_model] tensors
        (n0, m0), (n1, m1) = ours[0], ours[-1]
        summary["ours_peak_rss_bytes_per_extra_string"] = round((m1 - m0) * 2**20 / (n1 - n0))
    print(json.dumps({"summary": summary}, indent=2))


if __name__ == "__main__":
    main()
