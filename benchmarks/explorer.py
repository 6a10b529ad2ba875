"""Benchmark: the explorer's update latency in headless Chromium, and what it adds to the report.

Usage: python benchmarks/explorer.py [--n 5000] [--edits 200] [--weights PATH]

Writes a report as a user does (``bracketlens report --no-png``, its own process),
then opens it offline in Debian's Chromium and makes random edits to the string:
each edit inserts, deletes or flips one paren (at most 40). The latency of an edit
runs from just before the input event is dispatched to the next animation frame
after the handler has redrawn every view (``performance.now()`` in the page). The
floor, measured in the same page, is the wait for an animation frame with no edit.
Both are measured twice on the same 200 edits: plain, and with the elevation head
mean-ablated and patched from a second string (two more passes, for the logits).

The report's size without the explorer is the same ``index.html`` with the Explore section cut out.
Prints one JSON object with the ratios to the targets (p95 50 ms, +1.5 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LATENCY_TARGET_MS = 50.0
SIZE_TARGET_BYTES = 1.5e6
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

EDITS_JS = """
async ([count, seed]) => {
  let state = seed;
  const rand = (k) => { state = (state * 1103515245 + 12345) % 2147483648; return state % k; };
  const frame = () => new Promise((r) => requestAnimationFrame(() => r(performance.now())));
  const input = document.getElementById("explore-input");
  let s = input.value;
  const floor = [], latency = [], handler = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    floor.push((await frame()) - t0);
    const at = rand(s.length + 1), c = rand(2) ? "(" : ")";
    const op = s.length >= 40 ? 1 : s.length === 0 ? 0 : rand(3);
    s = op === 0 ? s.slice(0, at) + c + s.slice(at)
      : op === 1 ? s.slice(0, Math.max(0, at - 1)) + s.slice(at)
      : s.slice(0, Math.max(0, at - 1)) + c + s.slice(at);
    input.value = s;
    const start = performance.now();
    input.dispatchEvent(new Event("input", { bubbles: true }));
    handler.push(performance.now() - start);
    latency.push((await frame()) - start);
  }
  return { floor, latency, handler };
}
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def _summary(times: dict[str, list[float]]) -> dict[str, float]:
    return {
        f"{name}_{p}_ms": _percentile(values, q)
        for name, values in times.items()
        for p, q in (("p50", 50), ("p95", 95))
    }


def write_report(n: int, weights: str | None, out: Path) -> float:
    """Run ``bracketlens report`` in its own process; return its wall time."""
    import time

    cmd = [sys.executable, "-m", "bracketlens.cli", "report", "--n", str(n), "--no-png"]
    cmd += ["--out", str(out)] + (["--weights", weights] if weights else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sizes(index: Path) -> dict[str, int]:
    """The page's size, and its size without the Explore section."""
    text = index.read_text(encoding="utf-8")
    section = re.search(r'<section id="explore">.*?</section>', text, flags=re.DOTALL)
    if section is None:
        raise SystemExit("the report has no Explore section")
    after = len(text.encode("utf-8"))
    return {"after": after, "before": after - len(section.group(0).encode("utf-8"))}


def measure(index: Path, edits: int) -> dict[str, dict[str, float]]:
    """Latencies (ms) of random edits, plain and with an ablation and a patch active."""
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_context(offline=True, viewport={"width": 1280, "height": 900}).new_page()
        page.goto(index.as_uri())
        page.wait_for_function("window.bracketlens !== undefined")
        page.evaluate(EDITS_JS, [20, 1])  # warm up the JIT
        page.fill("#explore-input", "(())")
        out["plain"] = _summary(page.evaluate(EDITS_JS, [edits, 7]))
        elevation = page.evaluate("window.bracketlens.explorer.model.roles.elevation.join('.')")
        page.click(f'button[data-component="{elevation}"]')
        page.fill("#explore-input-b", "(()(()))")
        page.select_option("#explore-patch-component", elevation)
        page.fill("#explore-input", "(())")  # the same edits as above, from the same start
        out["ablated_and_patched"] = _summary(page.evaluate(EDITS_JS, [edits, 7]))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="strings in the report's sample")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        seconds = write_report(args.n, args.weights, report)
        size = sizes(report / "index.html")
        latency = measure(report / "index.html", args.edits)
    grown = size["after"] - size["before"]
    print(
        json.dumps(
            {
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                "report_seconds": round(seconds, 1),
                "report_bytes_before": size["before"],
                "report_bytes_after": size["after"],
                "report_growth_bytes": grown,
                "ratio_growth_to_1.5MB_target": round(grown / SIZE_TARGET_BYTES, 3),
                "edits": args.edits,
                "latency": latency,
                "ratio_p95_to_50ms_target": {
                    k: round(v["latency_p95_ms"] / LATENCY_TARGET_MS, 3) for k, v in latency.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
