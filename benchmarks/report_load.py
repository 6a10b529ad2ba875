"""Benchmark: how fast the report's page opens in headless Chromium.

Usage: python benchmarks/report_load.py [--page PATH] [--loads 5] [--n 5000]

Without ``--page`` it writes the bundled model's report as a user does
(``bracketlens report --no-png``, its own process) and opens that. Each load
starts a fresh Chromium (Debian's ``/usr/bin/chromium``, offline, 1280x900), so
no load reuses another's compiled scripts. Times are ``performance.now()`` in the
page, that is milliseconds after navigation started:

- ``dcl``: the DOMContentLoaded event;
- ``api``: ``window.bracketlens`` assigned with its ``predict``;
- ``api_answers``: a ``predict`` call made as soon as the API exists has returned
  (this waits for whatever else holds the page's main thread);
- ``first_viewport``: the first animation frame, once the page is parsed, at which
  every figure that intersects the first viewport is drawn (a plotly figure: its
  SVG exists; circuitsvis: its view exists; the explorer: its canvases and the
  probability are filled in);
- ``scroll_to_figure``: after all that, the first plotly figure scrolled into view,
  the time until it is drawn (what drawing on demand costs the reader);
- ``longest_task``: the longest the main thread was held at once, from the API's
  arrival until that figure was drawn (the explorer cannot answer meanwhile).

Prints one JSON object: each load's times, their medians, the page's size, which
figures sat in the first viewport, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 180_000

# Runs in the page before any of its own scripts.
INIT_JS = """
(() => {
  const rec = (window.__blLoad = { tasks: [] });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) rec.tasks.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  let api;
  Object.defineProperty(window, "bracketlens", {
    configurable: true, enumerable: true,
    get() { return api; },
    set(v) {
      api = v;
      if (rec.api === undefined && v && typeof v.predict === "function") rec.api = performance.now();
    },
  });
  document.addEventListener("DOMContentLoaded", () => { rec.dcl = performance.now(); });
  const drawn = (el) => {
    if (el.id === "explorer") {
      const prob = document.getElementById("explore-prob");
      return el.querySelector("canvas") !== null && prob !== null && prob.textContent !== "";
    }
    if (el.querySelector("#cv-attention")) {
      return el.querySelector("#cv-attention svg, #cv-attention canvas, #cv-attention div div") !== null;
    }
    return el.querySelector(".main-svg") !== null;
  };
  const inView = (el) => {
    const r = el.getBoundingClientRect();
    return r.height > 0 && r.bottom > 0 && r.top < window.innerHeight;
  };
  const tick = () => {
    if (document.readyState !== "loading") {
      const figures = [...document.querySelectorAll(".figure, #explorer")].filter(inView);
      if (figures.every(drawn)) {
        rec.first_viewport = performance.now();
        rec.viewport_figures = figures.map((el) => el.id);
        return;
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""

SCROLL_JS = """
async () => {
  const el = document.querySelector(".figure .plotly-graph-div");
  const start = performance.now();
  el.scrollIntoView();
  while (el.querySelector(".main-svg") === null) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return performance.now() - start;
}
"""

ANSWER_JS = "() => { window.bracketlens.predict(['(())', '(()']); return performance.now(); }"


def write_report(n: int, out: Path) -> None:
    """Run ``bracketlens report --no-png`` on the bundled model in its own process."""
    cmd = [sys.executable, "-m", "bracketlens.cli", "report", "--n", str(n), "--no-png"]
    subprocess.run([*cmd, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)


def load_once(p, url: str) -> dict[str, object]:
    """Open ``url`` in a fresh browser; the page's own record of when each thing happened."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        page = browser.new_context(offline=True, viewport=VIEWPORT).new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(INIT_JS)
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__blLoad.api !== undefined", timeout=TIMEOUT_MS)
        answered = page.evaluate(ANSWER_JS)
        page.wait_for_function(
            "() => window.__blLoad.first_viewport !== undefined && window.__blLoad.dcl !== undefined",
            timeout=TIMEOUT_MS,
        )
        scrolled = page.evaluate(SCROLL_JS)
        record = page.evaluate("() => window.__blLoad")
    finally:
        browser.close()
    after_api = [d for start, d in record.pop("tasks") if start + d > record["api"]]
    return record | {
        "api_answers": answered,
        "scroll_to_figure": scrolled,
        "longest_task": max(after_api, default=0.0),
        "console_errors": errors,
    }


def summarise(loads: list[dict[str, object]]) -> dict[str, object]:
    """Per-load times (ms, rounded) and their median, min and max."""
    out: dict[str, object] = {}
    for key in ("dcl", "api", "api_answers", "first_viewport", "scroll_to_figure", "longest_task"):
        values = [float(str(load[key])) for load in loads]
        out[f"{key}_ms"] = {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "each": [round(v, 1) for v in values],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, help="an index.html to open (default: write one)")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000, help="strings of the report written")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page = args.page
        if page is None:
            write_report(args.n, Path(tmp) / "report")
            page = Path(tmp) / "report" / "index.html"
        page = page.resolve()
        load_before = os.getloadavg()
        with sync_playwright() as p:
            loads = [load_once(p, page.as_uri()) for _ in range(args.loads)]
        load_after = os.getloadavg()
        size = page.stat().st_size
    result = {
        "page": str(args.page) if args.page else f"bracketlens report --n {args.n} --no-png",
        "page_bytes": size,
        "page_mb": round(size / 1e6, 2),
        "loads": args.loads,
        **summarise(loads),
        "first_viewport_figures": loads[0]["viewport_figures"],
        "console_errors": sorted({e for load in loads for e in load["console_errors"]}),  # type: ignore[attr-defined]
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
