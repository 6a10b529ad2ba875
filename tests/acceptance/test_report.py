"""`bracketlens report` end to end, and the page it writes opened in a real headless browser."""

from __future__ import annotations

import json
import shutil
from html import escape as html_escape
from pathlib import Path

import pytest

from bracketlens.cli import main
from tests.conftest import COURSE_WEIGHTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "report"
    code = main(["report", "--n", "1500", "--seed", "3", "--search", "quick", "--out", str(out)])
    assert code == 0
    return out


def test_report_files(report_dir):
    assert (report_dir / "index.html").is_file()
    findings = json.loads((report_dir / "findings.json").read_text())
    assert findings["meta"]["n"] == 1500
    assert len(findings["meta"]["model_sha256"]) == 64
    assert findings["meta"]["library_version"]
    acc = findings["model_and_data"]["accuracy"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    assert set(findings["localisation"]) >= {"elevation_head", "negative_head", "tally_head"}
    assert findings["hypothesis"], "the hypothesis has claims"
    assert findings["resampling_tests"], "the hypotheses are tested on the held-out half"
    neg = findings["negative_head_attention"]
    assert neg is None or 0 <= neg["on_wrong_way_positions"]["value"] <= 1
    html = (report_dir / "index.html").read_text()
    assert "https://" not in html.split("<main>")[1].split("</main>")[0]  # no remote assets
    assert (report_dir / "index.html").stat().st_size <= 5e6
    assert "Small sample:" not in html  # 1,500 strings fill every failure group
    verdict = findings["explanation"]["verdict"]  # the bundled model's, from explain
    assert "What this model computes" in html and html_escape(verdict) in html
    found = findings["discovery"]  # the circuit found without a template, on 600 strings
    assert found["method"] == "eap-ig" and found["n_strings"] == 600 and found["n_pairs"] >= 200
    assert set(found["budgets"][0]["by_edit"]) == {"open_to_close", "close_to_open", "swap_block"}
    assert found["optimum"]["best"]["components"]
    section = html.split('<section id="discovery">')[1].split("</section>")[0]
    assert (
        "The circuit, found without a template" in section and "discovery_faithfulness" in section
    )
    assert html.index('id="discovery"') < html.index('id="localisation"')
    assert not list(report_dir.parent.glob(".report.*"))  # the temp folder is gone
    # the page carries the same findings, as valid JSON (a browser's JSON.parse reads it)
    embedded = html.split('<script type="application/json" id="findings">')[1].split("</script>")[0]
    assert json.loads(embedded.replace("<\\/", "</"), parse_constant=_reject) == findings


def _reject(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


# a lazily drawn figure is drawn once plotly has built its SVG (circuitsvis: its view)
DRAWN_JS = """(el) => el.dataset.drawn === "true" && (el.dataset.lazyFigure === "circuitsvis"
    ? el.querySelector("svg, canvas, div div") !== null : el.querySelector(".main-svg") !== null)"""
IN_VIEW_DRAWN = f"""() => [...document.querySelectorAll("[data-lazy-figure]")].filter((el) => {{
    const r = el.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight;
  }}).every({DRAWN_JS})"""
ALL_DRAWN = f"""() => [...document.querySelectorAll("[data-lazy-figure]")].every({DRAWN_JS})"""
FAR_BELOW_DRAWN = """() => [...document.querySelectorAll("[data-lazy-figure]")]
  .filter((el) => el.getBoundingClientRect().top > window.innerHeight + 1000)
  .map((el) => el.dataset.drawn === "true")"""


def _open_report(p, report_dir: Path):
    """A fresh offline page on the report, recording console errors and requests."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto((report_dir / "index.html").as_uri())
    page.wait_for_function("window.bracketlens !== undefined")
    return browser, page, errors, requests


def _local(url: str) -> bool:
    return url.startswith(("file://", "data:", "about:", "blob:"))


def test_report_page_renders_offline(report_dir):
    """Scrolled top to bottom, every figure is drawn as it comes into view, none before."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium (.ci/run installs Debian's chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser, page, errors, requests = _open_report(p, report_dir)
        n_figures = page.locator("[data-lazy-figure]").count()
        page.wait_for_timeout(500)  # time enough to draw, were figures drawn at load
        far_below = page.evaluate(FAR_BELOW_DRAWN)
        height = page.evaluate("document.documentElement.scrollHeight")
        for y in range(0, height, 600):
            page.evaluate(f"window.scrollTo(0, {y})")
            page.wait_for_function(IN_VIEW_DRAWN, timeout=60_000)
        page.wait_for_function(ALL_DRAWN, timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        plotly_drawn = page.locator(".figure .js-plotly-plot .main-svg").count()
        n_plotly = page.locator('[data-lazy-figure="plotly"]').count()
        browser.close()
    assert n_figures >= 10
    assert len(far_below) >= 5 and not any(far_below)
    assert plotly_drawn >= n_plotly >= n_figures - 1
    assert errors == []
    assert all(_local(url) for url in requests), requests


def test_report_printing_draws_every_figure(report_dir):
    """Print media draws every figure without any scrolling."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium (.ci/run installs Debian's chromium)")
    with sync_api.sync_playwright() as p:
        browser, page, errors, requests = _open_report(p, report_dir)
        page.wait_for_timeout(500)  # the libraries unpacked, as a reader who prints has waited
        assert not page.evaluate(ALL_DRAWN)
        page.emulate_media(media="print")
        page.wait_for_function(ALL_DRAWN, timeout=60_000)
        scroll = page.evaluate("window.scrollY")
        browser.close()
    assert scroll == 0
    assert errors == []
    assert all(_local(url) for url in requests), requests


def test_report_page_shows_sample_warnings(tmp_path, capsys):
    """A sample too small for reliable intervals: stderr's warning is in the page, twice."""
    out = tmp_path / "report"
    assert (
        main(
            [
                "report",
                "--n",
                "400",
                "--seed",
                "0",
                "--no-png",
                "--search",
                "quick",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    warnings = [line.split("warning: ", 1)[1] for line in err.splitlines() if "warning: " in line]
    assert len(warnings) == 1 and "unreliable" in warnings[0]
    page = (out / "index.html").read_text()
    note = f"<b>Small sample:</b> {html_escape(warnings[0])}</p>"
    model = page.split('<section id="model">')[1].split("</section>")[0]
    hypothesis = page.split('<section id="hypothesis">')[1].split("</section>")[0]
    # beside the failure groups' accuracy intervals and the resampling tests' intervals
    assert model.index("95% interval") < model.index(note)
    assert hypothesis.index("just negative</th>") < hypothesis.index(note)
    assert page.count(note) == 2


def test_report_explore_section(report_dir, bundled_model):
    """The live explorer is the report's first section; its model is the report's model."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium (.ci/run installs Debian's chromium)")
    from bracketlens import predict_proba, tokenize

    findings = json.loads((report_dir / "findings.json").read_text())
    elevation = findings["localisation"]["elevation_head"]["location"]
    strings = ["(()", "(())()", ""]
    expected = predict_proba(bundled_model, tokenize(strings)).tolist()
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(offline=True, viewport={"width": 1280, "height": 900}).new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((report_dir / "index.html").as_uri())
        first = page.evaluate("document.querySelector('main section').id")
        predicted = page.evaluate("(s) => window.bracketlens.predict(s)", strings)
        page.fill("#explore-input", strings[0])
        shown = page.text_content("#explore-prob")
        heads = page.text_content("#explorer .bl-heads") or ""
        page.locator("#explore").screenshot(path=str(ARTIFACTS / "report_explore.png"))
        browser.close()
    assert first == "explore"
    assert predicted == pytest.approx(expected, abs=1e-5)
    assert float(shown or "nan") == pytest.approx(expected[0], abs=2e-6)
    assert f"head {elevation} (elevation head)" in heads
    assert errors == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "--n", "0"], "argument --n: must be a whole number from 1"),
        (["report", "--weights", "/nonexistent.safetensors"], "does not exist"),
        (["analyze", "--n", "5"], "at least 20 strings"),
    ],
)
def test_bad_input_writes_nothing(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    try:
        code = main([*argv, "--out", str(out)] if argv[0] == "report" else argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_malformed_data_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[["()", true], ["(", "yes"]]')
    code = main(["report", "--data", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "record 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_analyze_json_on_course_checkpoint(capsys):
    if not COURSE_WEIGHTS.is_file():
        pytest.skip(f"course checkpoint not found at {COURSE_WEIGHTS} (CI provides it)")
    code = main(["analyze", "--weights", str(COURSE_WEIGHTS), "--n", "1500", "--json"])
    assert code == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings["localisation"]["elevation_head"]["location"] == "2.0"
    assert findings["elevation_circuit"]["tally"]["cos_vL_vR"] == pytest.approx(-0.9974, abs=0.003)


def test_analyze_rescores_saved_attack_results(capsys, tmp_path):
    course_best = "(" * 15 + ")" * 15 + ")(" + "(" * 4 + ")" * 4
    saved = tmp_path / "attack.json"
    saved.write_text(json.dumps([{"string": course_best, "label": False, "p_balanced": 0.9}]))
    code = main(["analyze", "--n", "400", "--json", "--attack", str(saved)])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["adversarial_examples"]
    assert rows[0]["string"] == course_best and rows[0]["label"] is False
    assert rows[0]["p_balanced"] != 0.9  # rescored with the model being analysed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[", "not valid JSON"),
        ('[{"p": 1}]', "expected the JSON list"),
        ('[{"string": "(x"}]', "'x'"),
    ],
)
def test_bad_attack_results(capsys, tmp_path, content, message):
    saved = tmp_path / "attack.json"
    saved.write_text(content)
    code = main(
        [
            "report",
            "--n",
            "400",
            "--search",
            "quick",
            "--attack",
            str(saved),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_written_report_is_recognised_as_one_and_may_be_replaced(report_dir):
    from bracketlens.report.write import check_report_dir, is_report_findings, is_report_page

    assert is_report_findings(report_dir / "findings.json")
    assert is_report_page(report_dir / "index.html")
    check_report_dir(report_dir)  # raises for a folder a report may not replace


def test_a_second_report_reuses_explains_result_and_says_so(report_dir, tmp_path, capsys):
    """The fixture's report stored explain's result (in the session's store); the same
    weights, strings, seed and search read it back, and the page and terminal say so."""
    capsys.readouterr()
    out = tmp_path / "again"
    argv = ["report", "--n", "1500", "--seed", "3", "--search", "quick", "--no-png"]
    assert main([*argv, "--out", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "Reused explain's result for these weights, data and search, stored" in said
    first = json.loads((report_dir / "findings.json").read_text())["explanation"]
    again = json.loads((out / "findings.json").read_text())["explanation"]
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    html = (out / "index.html").read_text()
    assert html_escape("Reused explain's result for these weights, data and search") in html
    first_page = (report_dir / "index.html").read_text()
    assert html_escape("Reused explain's result") not in first_page
