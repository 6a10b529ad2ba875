"""The live explorer in a real headless Chromium, offline: the JavaScript model against PyTorch.

One explorer-only page (faster to load than a whole report) for most checks;
``test_report.py`` checks the Explore section of a real report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bracketlens import evaluation_set, failure_groups, near_miss_set, tokenize
from bracketlens.circuits.elevation import Roles
from bracketlens.data.generate import random_balanced, random_unbalanced
from bracketlens.data.tokens import MAX_PARENS
from bracketlens.data.truth import FailureGroup
from bracketlens.explorer import explorer_export, explorer_page, module_source
from bracketlens.interventions import patch, run_patched
from bracketlens.interventions.ablate import mean_activation
from bracketlens.model.names import act_name
from tests.acceptance.test_report import ARTIFACTS, CHROMIUM, FLAGS

N_AGREEMENT = 2000
# the bundled model's localised roles (README: head 1.1 reads position 3; 2.1 is negative);
# the checks below hold for any roles, these only decide what is highlighted and ablated
ROLES = Roles(elevation_layer=1, elevation_head=1, read_position=3)
NEGATIVE = (2, 1)
ELEVATION = f"{ROLES.elevation_layer}.{ROLES.elevation_head}"


def agreement_strings(n: int = N_AGREEMENT, seed: int = 16) -> list[str]:
    """Every length 0..40 about equally often, balanced and not, plus near misses."""
    rng = np.random.default_rng(seed)
    near = near_miss_set(n // 10, seed).strings
    per_length = np.full(MAX_PARENS + 1, (n - len(near)) // (MAX_PARENS + 1))
    per_length[: (n - len(near)) - per_length.sum()] += 1
    out = list(near)
    for length, count in enumerate(per_length):
        n_bal = count // 3 if length % 2 == 0 else 0
        if length == 0:
            n_bal = count  # the empty string is the only string of length 0
        parts = [random_unbalanced(length, count - n_bal, rng)] if count > n_bal else []
        if n_bal:
            parts.append(random_balanced(length, n_bal, rng))
        out += ["".join("(" if s > 0 else ")" for s in row) for part in parts for row in part]
    return out


def _launch(p):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium (.ci/run installs Debian's chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


class Browser:
    """A headless Chromium, offline, recording console errors and every request."""

    def __init__(self, p) -> None:
        self.browser = _launch(p)
        self.context = self.browser.new_context(
            offline=True, viewport={"width": 1280, "height": 1100}
        )
        self.errors: list[str] = []
        self.requests: list[str] = []

    def page(self, url: str | None = None):
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        if url is not None:
            page.goto(url)
            page.wait_for_function("window.bracketlens !== undefined")
        return page


@pytest.fixture(scope="module")
def means_data():
    return evaluation_set(1000, seed=16)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, bundled_model, means_data) -> str:
    export = explorer_export(bundled_model, means_data, ROLES, NEGATIVE)
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    path.write_text(explorer_page(export), encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as p:
        b = Browser(p)
        yield b
        b.browser.close()
    assert all(url.startswith(("file://", "data:", "about:", "blob:")) for url in b.requests), (
        b.requests
    )


@pytest.fixture(scope="module")
def page(browser, page_url):
    return browser.page(page_url)


def _logits(model, strings: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(tokenize(strings[i : i + 500]))[:, 0] for i in range(0, len(strings), 500)]
        )


def test_typing_updates_prob(page, browser, bundled_model):
    for s in ["(())", "(()", "", "(", ")()(" * 10]:
        page.fill("#explore-input", s)
        expected = _logits(bundled_model, [s]).softmax(-1)[0, 1].item()
        shown = page.text_content("#explore-prob")
        assert shown is not None and len(shown.split(".")[1]) == 6
        assert float(shown) == pytest.approx(expected, abs=2e-6)
    assert page.text_content("#explore-label") == "unbalanced"
    assert page.text_content("#explore-group") == FailureGroup.NEGATIVE_ONLY.label
    ARTIFACTS.mkdir(exist_ok=True)
    page.fill("#explore-input", "(()(()))()")
    page.hover('canvas[data-view="tokens"]', position={"x": 40, "y": 10})
    assert page.get_attribute("#explorer", "data-hover") == "3"
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)
    assert browser.errors == []


def test_predict_agrees_with_pytorch(page, browser, bundled_model):
    strings = agreement_strings()
    assert len(strings) == N_AGREEMENT
    assert {len(s) for s in strings} == set(range(MAX_PARENS + 1))
    groups = set(failure_groups(tokenize(strings)).tolist())
    assert groups == {int(g) for g in FailureGroup}
    logits = _logits(bundled_model, strings).double()
    js = page.evaluate(
        "(s) => [window.bracketlens.predict(s), window.bracketlens.logits(s)]", strings
    )
    p_err = (torch.tensor(js[0], dtype=torch.float64) - logits.softmax(-1)[:, 1]).abs().max().item()
    logit_err = (torch.tensor(js[1], dtype=torch.float64) - logits).abs().max().item()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "explorer_agreement.json").write_text(
        json.dumps({"n": len(strings), "max_abs_p": p_err, "max_abs_logit": logit_err})
    )
    assert p_err <= 1e-5
    assert logit_err <= 1e-4
    bad = page.evaluate("() => window.bracketlens.predict(['(x)', '('.repeat(41), '()'])")
    assert math.isnan(bad[0]) and math.isnan(bad[1]) and bad[2] > 0.5


def test_trace_keyed_by_hook_names(page, bundled_model):
    s = "(()))("
    trace = page.evaluate("(s) => window.bracketlens.trace(s)", s)
    _, cache = bundled_model.run_with_cache(tokenize(s))
    for layer in range(bundled_model.cfg.n_layers):
        for hook in ("attn.hook_pattern", "attn.hook_z", "mlp.hook_post", "hook_resid_post"):
            name = f"blocks.{layer}.{hook}"
            torch.testing.assert_close(
                torch.tensor(trace[name], dtype=torch.float32), cache[name][0], atol=1e-4, rtol=0
            )
    torch.testing.assert_close(
        torch.tensor(trace["ln_final.hook_scale"], dtype=torch.float32),
        cache["ln_final.hook_scale"][0],
    )
    assert len(trace["logits"]) == 2


def test_mean_ablation_matches_python(page, browser, bundled_model, means_data):
    """Mean-ablating the elevation head: the change in logit difference, JS against Python."""
    data = evaluation_set(1500, seed=17)
    failing = [s for s, g in zip(data.strings, data.failure_groups.tolist(), strict=True)
               if g in (FailureGroup.BOTH, FailureGroup.ELEVATION_ONLY)]  # fmt: skip
    component = f"head {ELEVATION}"
    mean = mean_activation(bundled_model, means_data.tokens, component)
    tokens = tokenize(failing)
    clean = run_patched(bundled_model, tokens)
    hook = (act_name("result", ROLES.elevation_layer),
            patch(mean, head=ROLES.elevation_head))  # fmt: skip
    ablated = run_patched(bundled_model, tokens, [hook])
    effect = (ablated[:, 1] - ablated[:, 0]) - (clean[:, 1] - clean[:, 0])
    keep = (effect.abs() >= 0.05).nonzero().flatten()[:400]  # 400 are plenty; each costs time
    assert len(keep) >= 100, "too few strings on which the ablation matters"
    chosen, want = [failing[i] for i in keep.tolist()], effect[keep].double()
    js = page.evaluate(
        """([s, key]) => {
            const clean = window.bracketlens.logits(s);
            const ablated = window.bracketlens.logits(s, {ablate: {[key]: 'mean'}});
            return ablated.map((a, i) => (a[1] - a[0]) - (clean[i][1] - clean[i][0]));
        }""",
        [chosen, ELEVATION],
    )
    err = (torch.tensor(js, dtype=torch.float64) - want).abs().max().item()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "explorer_ablation.json").write_text(
        json.dumps({"n": len(chosen), "max_abs_effect_difference": err,
                    "min_abs_effect": want.abs().min().item()})
    )  # fmt: skip
    assert err <= 1e-4, err
    # the same through the page: click the head, read the change it prints
    page.fill("#explore-input", chosen[0])
    page.select_option("#explore-ablate-mode", "mean")
    page.click(f'button[data-component="{ELEVATION}"]')
    shown = page.text_content("#explore-ablation-delta") or ""
    assert float(shown.rsplit(" ", 1)[1]) == pytest.approx(want[0].item(), abs=1e-4)
    page.click(f'button[data-component="{ELEVATION}"]')  # restore
    assert page.text_content("#explore-ablation-delta") == ""
    assert browser.errors == []


@pytest.mark.parametrize(
    ("text", "message"), [("(()x", "'x' at position 3"), ("(" * 41, "at most 40")]
)
def test_bad_string_shows_message(page, browser, text, message):
    page.fill("#explore-input", text)
    assert message in (page.text_content("#explore-error") or "")
    assert page.text_content("#explore-prob") == "\u2014"
    page.fill("#explore-input", "()")
    assert page.text_content("#explore-error") == ""
    assert float(page.text_content("#explore-prob") or "nan") > 0.5
    assert browser.errors == []


def test_url_fragment_round_trips(page, browser, page_url):
    page.fill("#explore-input", "(()(")
    page.fill("#explore-input-b", "()()")
    page.select_option("#explore-ablate-mode", "zero")
    page.click('button[data-component="mlp0"]')
    page.select_option("#explore-patch-component", ELEVATION)
    page.select_option("#explore-patch-position", "1")
    fragment = f"#s=(()(&t=()()&ablate=mlp0:zero&patch={ELEVATION}@1"
    page.wait_for_function("(f) => location.hash === f", arg=fragment, timeout=5000)
    shown = [page.text_content(f"#explore-{r}") for r in ("prob", "ablation-delta", "patch-delta")]
    again = browser.page(page_url + fragment)
    assert again.input_value("#explore-input") == "(()("
    assert again.input_value("#explore-input-b") == "()()"
    assert [
        again.text_content(f"#explore-{r}") for r in ("prob", "ablation-delta", "patch-delta")
    ] == shown
    assert "change" in (shown[2] or "")
    again.close()
    assert browser.errors == []


def test_widget_module_renders_in_a_plain_page(browser, bundled_model, means_data):
    """The anywidget entry point (default export's render) on a stand-in widget model.

    The module is imported from a blob: URL, as anywidget itself loads ``_esm``.
    """
    payload = explorer_export(bundled_model, means_data, ROLES, NEGATIVE).to_json()
    safe = module_source().replace("</", "<\\/")
    page = browser.page()
    page.set_content(
        f"""<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><div id="w"></div>
<script type="text/plain" id="src">{safe}</script>
<script type="application/json" id="payload">{json.dumps(payload)}</script>
<script type="module">
const src = document.getElementById("src").textContent;
const url = URL.createObjectURL(new Blob([src], {{type: "text/javascript"}}));
const widget = (await import(url)).default;
const traits = {{payload: JSON.parse(document.getElementById("payload").textContent),
                string: "(()", compare: ""}};
const saved = [];
const model = {{get: (k) => traits[k], set: (k, v) => {{ traits[k] = v; }}, on() {{}}, off() {{}},
               save_changes: () => saved.push(traits.string)}};
widget.render({{model, el: document.getElementById("w")}});
window.widgetSaved = saved;
</script></body></html>"""
    )
    page.wait_for_selector('#w [data-role="prob"]:not(:empty)')
    expected = _logits(bundled_model, ["(()"]).softmax(-1)[0, 1].item()
    assert float(page.text_content('#w [data-role="prob"]') or "nan") == pytest.approx(
        expected, abs=2e-6
    )
    assert page.locator("#w canvas[data-head]").count() == 6
    page.fill('#w [data-role="input"]', "()")
    assert page.evaluate("window.widgetSaved") == ["()"]  # the string goes back to Python
    assert page.locator("#explore-prob").count() == 0  # no fixed ids inside a notebook
    page.close()
    assert browser.errors == []
