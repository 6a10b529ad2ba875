"""An analysis -> a self-contained HTML page (plotly and circuitsvis inlined).

The page makes no network request: plotly.js and the circuitsvis bundle are
inlined once each (packed, at the end of the page), and every figure refers to
them. The Explore section comes first and its module runs before any figure is
drawn; each figure is drawn as it comes into view.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from bracketlens.analysis import Analysis
from bracketlens.explorer.html import explorer_section
from bracketlens.jsonout import strict_dumps
from bracketlens.report.deferred import circuitsvis_html, figure_html, libraries_html
from bracketlens.report.figures import Figure
from bracketlens.report.text import section_texts

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2433; background: #fafbfc; line-height: 1.5; }
header { background: #1d2433; color: white; padding: 28px 48px; }
header h1 { margin: 0 0 6px 0; font-size: 26px; }
header p { margin: 0; opacity: 0.8; font-size: 14px; }
nav { padding: 12px 48px; background: #eef1f5; font-size: 14px; position: sticky; top: 0; z-index: 5; }
nav a { margin-right: 18px; color: #3969ac; text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 12px 48px 64px 48px; }
section { margin-top: 36px; }
h2 { border-bottom: 2px solid #dde3ea; padding-bottom: 6px; }
.figure { background: white; border: 1px solid #e3e8ee; border-radius: 8px;
          padding: 10px 14px; margin: 16px 0; }
.caption { font-size: 14px; color: #4a5568; margin: 4px 4px 0 4px; }
table { border-collapse: collapse; font-size: 14px; margin: 10px 0; }
td, th { border-bottom: 1px solid #e3e8ee; padding: 5px 12px; text-align: left; }
th { background: #f3f5f8; }
.claim { padding: 8px 12px; margin: 8px 0; border-left: 4px solid #11a579; background: white; }
.claim.fails { border-left-color: #e73f74; }
.note { color: #8a5a00; background: #fff6e0; padding: 8px 12px; border-radius: 6px; }
.note.sample { border-left: 4px solid #e68310; }
code { background: #eef1f5; padding: 1px 4px; border-radius: 3px; }
"""

# marks a page as a report's own: report replaces an index.html only when it carries this
GENERATOR_TAG = '<meta name="generator" content="bracketlens report">'

SECTIONS = [
    ("explore", "Explore"),
    ("model", "Model and data"),
    ("attribution", "Logit attribution"),
    ("algorithm", "What this model computes"),
    ("discovery", "The circuit, found without a template"),
    ("localisation", "Where the circuit is"),
    ("circuit", "The total elevation circuit"),
    ("negative", "The negative head"),
    ("patching", "The tallying head, patched"),
    ("hypothesis", "Hypothesis"),
    ("attack", "Adversarial examples"),
]


def _verdict_html(f: Analysis) -> str:
    """explain's verdict sentence, first on the page: what this model computes."""
    if f.explanation is None:
        return ""
    return f'<p class="claim"><b>{html.escape(f.explanation.verdict)}</b></p>'


def _circuitsvis_html(f: Analysis) -> str:
    """The tallying head's patched attention as a circuitsvis attention-heads view."""
    from circuitsvis.utils.convert_props import convert_props

    patched = f.patching[1]  # keys averaged over all-'(' and all-')'
    labels = ["[start]", *[str(i + 1) for i in range(patched.pattern.shape[-1] - 2)], "[end]"]
    props = convert_props(
        {
            "tokens": labels,
            "attention": patched.pattern,
            "attentionHeadNames": [f"0.{h}" for h in range(patched.pattern.shape[0])],
            "maxValue": float(patched.pattern.max()),
            "maskUpperTri": False,
        }
    )
    caption = f"{patched.description} (circuitsvis; hover a head)"
    return circuitsvis_html("cv-attention", props, caption)


def render_html(
    f: Analysis,
    figures: dict[str, list[Figure]],
    png_note: str,
    payload: dict[str, object] | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The whole page as one string; ``payload`` is ``f.to_json()`` if already made.

    The explorer's module runs as parsing ends, before any figure is drawn; figures
    are drawn as they come into view (see :mod:`bracketlens.report.deferred`).
    ``warnings`` (about the sample's size) are shown beside the numbers they qualify.
    """
    texts = section_texts(f, png_note, warnings)
    body = []
    for key, title in SECTIONS:
        parts = [f'<section id="{key}"><h2>{html.escape(title)}</h2>', texts.get(key, "")]
        parts += [figure_html(fig) for fig in figures.get(key, [])]
        if key == "patching" and f.patching:
            parts.append(_circuitsvis_html(f))
        if key == "explore":
            parts.append(
                explorer_section(f.explorer)
                if f.explorer is not None
                else '<p class="note">This analysis ran without the explorer stage.</p>'
            )
        body.append("\n".join(parts) + "</section>")
    nav = " ".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in SECTIONS)
    meta = f.meta
    # "</" inside a script element would end it early
    # the same content as findings.json (valid JSON: non-finite numbers are null there)
    findings_json = strict_dumps(f.to_json() if payload is None else payload).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{GENERATOR_TAG}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bracketlens report</title>
<style>{_CSS}</style>
</head><body>
<header><h1>bracketlens report</h1>
<p>{html.escape(str(meta["weights"]))} &middot; {html.escape(str(meta["data"]))} &middot;
model sha256 {html.escape(str(meta["model_sha256"])[:16])}&hellip; &middot; bracketlens {html.escape(str(meta["library_version"]))}</p></header>
<nav>{nav}</nav>
{_verdict_html(f)}
<main>{"".join(body)}</main>
<script type="application/json" id="findings">{findings_json}</script>
{libraries_html(circuitsvis=bool(f.patching))}
</body></html>"""
