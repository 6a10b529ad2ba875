"""The report's prose: each section's numbers in sentences and small tables."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bracketlens.analysis import Analysis
from bracketlens.data.truth import FailureGroup, labels_present
from bracketlens.localisation import RoleFinding
from bracketlens.report.discovery import discovery_html

if TYPE_CHECKING:
    from bracketlens.algorithms.result import Explanation


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def _model(f: Analysis, png_note: str, notes: str = "") -> str:
    acc = f.accuracy
    rows = [
        [label, f"{est.n:,}", _pct(est.value) if est.n else "-",
         f"[{_pct(est.low)}, {_pct(est.high)}]" if est.n else "-"]
        for label, est in f.group_accuracy.items()
    ]  # fmt: skip
    wrong = f.evaluation.wrong[:8]
    wrong_html = (
        _table(["misclassified string", "P(balanced)"], [[s, f"{p:.6f}"] for s, p in wrong])
        if wrong
        else "<p>No string of the sample is misclassified.</p>"
    )
    return (
        f"<p>Accuracy <b>{_pct(acc.value)}</b> (95% Wilson interval {_pct(acc.low)} to "
        f"{_pct(acc.high)}) on {acc.n:,} strings ({html.escape(f.data.description)}); "
        f"{f.evaluation.n_wrong} wrong.</p>"
        + _table(["failure group", "strings", "accuracy", "95% interval"], rows)
        + notes
        + wrong_html
        + (f'<p class="note">{html.escape(png_note)}</p>' if png_note else "")
    )


def _attribution(f: Analysis) -> str:
    r2 = f.ln_final_r2
    return (
        "<p>The final LayerNorm at position 0 is close to linear: a least-squares fit on one "
        f"half of the sample has r&sup2; = <b>{r2['fit_half']:.4f}</b>, and "
        f"<b>{r2['held_out_half']:.4f}</b> on the other half. Pulling the unbalanced direction "
        "(<code>W_U[:, 0] - W_U[:, 1]</code>) back through that fit gives the direction in "
        "the residual stream; each component's output in it, centred on balanced strings, "
        "shows what pushes a string towards <i>unbalanced</i>.</p>"
    )


def _role_row(f: RoleFinding) -> list[str]:
    top = sorted(f.evidence.items(), key=lambda kv: -abs(kv[1]))[:3]
    evidence = ", ".join(f"{k}: {v:.3g}" for k, v in top)
    return [f.role, f.text or "not found", f"{f.confidence:.2f}", evidence]


def _localisation(f: Analysis) -> str:
    loc = f.localisation
    rows = [
        _role_row(x)
        for x in (loc.elevation_head, loc.negative_head, loc.read_position, loc.tally_head,
                  loc.start_close_component)
    ]  # fmt: skip
    neurons = ", ".join(loc.mlp_neurons) or "none"
    return (
        "<p>Found without assuming any head index: each role is the best-scoring "
        "component, fitted on one half of the sample. Confidence is 1 - runner-up / winner.</p>"
        + _table(["role", "where", "confidence", "strongest evidence"], rows)
        + f"<p>MLP neurons that turn the tally into a boolean: {html.escape(neurons)}.</p>"
        + f"<p>Roles used below: {html.escape(f.roles_source)}.</p>"
        + _start_close(f)
        + _attribution_patching(f)
    )


def _start_close(f: Analysis) -> str:
    where = f.localisation.start_close_component.text
    if where is None or where not in f.attribution.labels:
        return ""
    values = f.attribution[where]
    closes = ~f.data.starts_open & (f.data.seq_length > 0)
    if not closes.any() or closes.all():
        return ""
    on, off = float(values[closes].median()), float(values[~closes].median())
    return (
        f"<p>{html.escape(where)}, whose mean ablation raises P(balanced) most on strings "
        f"starting with ')', writes a median {on:.3f} in the unbalanced direction at position "
        f"0 on those strings, against {off:.3f} on the others (centred on balanced strings).</p>"
    )


def _negative(f: Analysis) -> str:
    neg = f.negative_attention
    if neg is None:
        return ""
    on, base = neg.on_wrong_way, neg.uniform_baseline
    return (
        f"<p>On strings that go negative, head {neg.head} puts <b>{on.value:.3f}</b> of its "
        f"attention from position 0 (95% interval {on.low:.3f} to {on.high:.3f}) on the "
        "positions whose suffix has more '(' than ')'; uniform attention over the parens "
        f"would put {base.value:.3f} there ({neg.lift:.2f}x).</p>"
    )


def _negative_section(f: Analysis) -> str:
    feeders = f.negative_feeders
    if f.negative_attention is None and feeders is None:
        return "<p>No head passes the negative test in this model, or no string goes negative.</p>"
    text = _negative(f)
    if feeders is not None:
        medians = feeders.group_medians(f.data.failure_groups)
        group = FailureGroup.NEGATIVE_ONLY.label
        ranked = sorted(medians, key=lambda k: -abs(medians[k].get(group, 0.0)))[:3]
        top = ", ".join(f"{html.escape(k)} ({medians[k].get(group, 0.0):+.3f})" for k in ranked)
        text += (
            f"<p>What head {feeders.head} reads: each earlier component's output at every "
            "position, in the head's input direction (the unbalanced direction pulled back "
            "through its OV matrix and a linear fit of its ln1 over the paren positions, "
            f"r&sup2; = {feeders.ln_fit_r2:.4f}), weighted by the head's attention from "
            "position 0 and centred on balanced strings. On strings that only go negative "
            f"the largest median contributions come from {top}.</p>"
        )
    return text


NOT_FOUND = "<p>Not found: localisation named no elevation head in this model.</p>"


def _circuit(f: Analysis) -> str:
    e, r, att = f.elevation, f.roles, f.attention_read
    if e is None or r is None or att is None:
        return NOT_FOUND
    head = f"{r.elevation_layer}.{r.elevation_head}"
    cos2 = ", ".join(f"MLP {k}: {v:.4f}" for k, v in e.mlp_cos2.items())
    return (
        f"<p>Head {head} attends from position 0 to position {r.read_position} with mean "
        f"probability <b>{att.value:.3f}</b> (95% interval {att.low:.3f} to {att.high:.3f}, "
        f"strings starting with '('). Its input direction at position {r.read_position} comes "
        f"from a linear fit of layer {r.elevation_layer}'s ln1 there (r&sup2; = "
        f"{e.ln_fit_r2:.4f}). The tallying head 0.{e.tally.head} writes opposite vectors for "
        f"'(' and ')': cos(v<sub>L</sub>, v<sub>R</sub>) = <b>{e.tally.cosine:.4f}</b>. The "
        f"mean squared cosine of v<sub>R</sub> with MLP input directions ({cos2}) is far above "
        f"that of a random vector ({e.random_cos2:.4f}).</p>"
    )


def _hypothesis(f: Analysis) -> str:
    if f.elevation is None:
        return NOT_FOUND
    items = []
    for c in f.elevation.claims:
        cls = "claim" if c.holds else "claim fails"
        top = ", ".join(f"{k} = {v:.4g}" for k, v in list(c.evidence.items())[:8])
        verdict = "holds" if c.holds else "does not hold"
        items.append(
            f'<div class="{cls}"><b>{verdict}</b>: {html.escape(c.text)}<br>'
            f"<small>{html.escape(top)}</small></div>"
        )
    return "".join(items)


def _scrubs(f: Analysis, notes: str = "") -> str:
    rows = []
    for s in f.scrubs:
        rec, ctl = s.recovered(), s.recovered("control")
        cells = []
        for k in ("all", "just total elevation failure", "just neg failure"):
            if k not in rec:
                cells.append("-")
                continue
            ci = s.recovered_interval(k) if s.per_string is not None else None
            interval = f" [{100 * ci.low:.1f}, {100 * ci.high:.1f}]" if ci else ""
            cells.append(f"{100 * rec[k]:.1f}%{interval} (control {100 * ctl[k]:.1f}%)")
        rows.append([s.hypothesis, *cells])
    return (
        "<p>Resampling tests on the half of the sample that localisation did not see: the "
        "named activation is replaced by its value on another string that shares the claimed "
        "feature. Share of loss recovered = (L<sub>random</sub> - L<sub>hypothesis</sub>) / "
        "(L<sub>random</sub> - L<sub>model</sub>), unclipped; the control resamples on a "
        "shuffled feature and should recover little. Where the random loss is barely above "
        "the model's, a group's share is noisy; brackets give its 95% bootstrap interval "
        "over the strings.</p>"
        + _table(["hypothesis", "all strings", "just total elevation", "just negative"], rows)
        + notes
    )


def _paths(f: Analysis) -> str:
    p = f.path_patch
    if p is None:
        return ""
    groups = ["all", "balanced", "just total elevation failure", "just neg failure"]
    rows = [
        [key] + [f"{e.logit_diff_change.get(g, float('nan')):+.3f}" for g in groups]
        for key, e in p.effects.items()
    ]
    share = p.share_interval("all")
    return (
        f"<p>Path patching of the claimed route, {html.escape(p.route)}: the tallying head's "
        "output at the read position is taken from another string, and the change may reach "
        "the logits only along the named path (heads in between frozen). The table gives the "
        "mean change of logit(balanced) - logit(unbalanced) at position 0; the claimed route "
        f"carries <b>{100 * share.value:.1f}%</b> (95% interval {100 * share.low:.1f}% to "
        f"{100 * share.high:.1f}%) of what the same patch does with every path open (all "
        "strings).</p>"
        + _table(["path", "all strings", "balanced", "just total elevation", "just negative"], rows)
    )


def _attribution_patching(f: Analysis) -> str:
    a = f.attribution_patching
    if a is None:
        return ""
    rows = []
    for group in labels_present(a.groups):
        top = ", ".join(f"{t.component} @ {t.position} ({t.effect:+.3f})" for t in a.top(group, 3))
        rows.append([group, html.escape(top)])
    return (
        "<p>Attribution patching, the map that needs no hypothesis: for every component at "
        "every position, the first-order estimate of how much mean-ablating it would lower "
        "the correct-class margin (logit of the true class minus the other), averaged per "
        "failure group (on the held-out half).</p>"
        + _table(["strings", "component @ position (estimated margin drop)"], rows)
    )


def _attack(f: Analysis) -> str:
    if not f.attack:
        return (
            "<p>No adversarial strings given: run <code>bracketlens attack --json &gt; "
            "attack.json</code>, then <code>bracketlens report --attack attack.json</code>.</p>"
        )
    rows = [
        [
            str(r["string"]),
            "balanced" if r["label"] else "unbalanced",
            f"{float(str(r['p_balanced'])):.6f}",
        ]
        for r in f.attack[:15]
    ]
    return (
        "<p>Strings found by the adversarial search, rescored with this model and checked "
        "against the ground truth, wrongest first.</p>"
        + _table(["string", "truth", "P(balanced)"], rows)
    )


_ALIGNMENT_HEADER = ["model", "variable", "where", "dim", "IIA [95% CI]", "to unbalanced",
                     "to balanced", "unchanged", "control", "null flips"]  # fmt: skip


def _algorithm(f: Analysis) -> str:
    """explain's verdict, the course's algorithm as one hypothesis, the models ranked, and
    the alignments of the passing (or closest) models; where localisation found no role,
    its locations."""
    from bracketlens.algorithms.store import reuse_note
    from bracketlens.algorithms.words import COURSE, course_verdict

    e = f.explanation
    if e is None:
        return "<p>Algorithm discovery was not run.</p>"
    shown = {*e.passing, COURSE, *([e.closest["model"]] if e.closest else [])}
    rows = [[a.model, a.variable, a.location.label, str(a.dim or "all"),
             f"{a.iia.value:.3f} [{a.iia.low:.3f}, {a.iia.high:.3f}]",
             *("-" if x is None else f"{x:.3f}" for x in a.iia_by_kind.values()),
             f"{a.control_iia:.3f}", "-" if a.null_flip_rate is None else f"{a.null_flip_rate:.3f}"]
            for a in e.variables if a.model in shown]  # fmt: skip
    loc = f.localisation
    missing = [r.role for r in (loc.elevation_head, loc.negative_head) if not r.found]
    found = {a.variable: a.location.label for a in e.variables if a.model == e.best_model}
    fallback = (f"<p>Localisation found no {html.escape(' or '.join(missing))}; by "
                f"interchange interventions the variables sit at: "
                f"{html.escape('; '.join(f'{k} at {v}' for k, v in found.items()))}.</p>"
                if missing and found else "")  # fmt: skip
    note = reuse_note(e)
    return (
        f"<p><b>{html.escape(e.verdict)}</b></p><p>{html.escape(course_verdict(e))}</p>"
        + ("" if note is None else f'<p class="note">{html.escape(note)}</p>')
        + "<p>Each variable of each causal model (the registered ones and those generated "
        "from a grammar of bracket variables) is patched from a source string into a base "
        "string at every hook and position (interchange interventions; rotations at the best "
        "few), chosen on validation pairs and scored on test pairs: IIA is the share of pairs "
        "whose patched prediction is the causal model's counterfactual label. A model passes "
        "when the 95% bound of every guard clears on at least 40 test pairs: IIA &ge; 0.9 "
        "overall and per pair kind, &ge; 0.85 on telling pairs (whose label is not the "
        "source's own), a control as strong as the patch &le; 0.6, null flips &le; 0.05. "
        + _search_words(e)
        + "</p>"
        + _table(_MODEL_HEADER, _model_rows(e))
        + _table(_ALIGNMENT_HEADER, rows)
        + fallback
    )


def _search_words(e: Explanation) -> str:
    """Whether the report looked as hard as ``bracketlens explain``, and the probe map."""
    from bracketlens.algorithms.conclude import budget
    from bracketlens.algorithms.search import Search

    same = e.budget == budget(Search())  # the form explain records its search in
    words = (" The search is <code>bracketlens explain</code>'s own." if same else
             " The search is lighter than <code>bracketlens explain</code>'s.")  # fmt: skip
    if e.probes is not None:
        words += (" The probe map below shows what a linear probe reads at each hook: "
                  "decodable is not the same as used, which the interventions test.")  # fmt: skip
    return words


_MODEL_HEADER = ["model", "rule", "passes", "IIA [95% CI]", "telling IIA", "smallest margin"]


def _model_rows(e: Explanation) -> list[list[str]]:
    """The models, passing ones first, then by the lower bound of IIA (at most 12)."""
    ranked = sorted(e.models, key=lambda m: (not m.passes, -m.iia.low))[:12]
    out = []
    for m in ranked:
        margins = [v for v in m.margin.values() if v is not None]
        out.append([m.name, m.rule, "yes" if m.passes else "no",
                    f"{m.iia.value:.3f} [{m.iia.low:.3f}, {m.iia.high:.3f}]",
                    "-" if m.telling_iia is None else f"{m.telling_iia:.3f}",
                    f"{min(margins):+.3f}" if margins else "untested"])  # fmt: skip
    return out


def _sample_notes(warnings: Sequence[str]) -> str:
    """The sample-size warnings ``analyze`` prints on stderr, as notes in the page."""
    return "".join(
        f'<p class="note sample" role="note"><b>Small sample:</b> {html.escape(w)}</p>'
        for w in warnings
    )


def section_texts(f: Analysis, png_note: str, warnings: Sequence[str] = ()) -> dict[str, str]:
    """HTML prose per section key; ``warnings`` sit beside the intervals they qualify."""
    notes = _sample_notes(warnings)
    return {
        "model": _model(f, png_note, notes),
        "attribution": _attribution(f),
        "algorithm": _algorithm(f),
        "discovery": discovery_html(f),
        "localisation": _localisation(f),
        "circuit": _circuit(f),
        "negative": _negative_section(f),
        "patching": (
            "<p>What the tallying head attends to from the read position when its keys (or "
            "queries) are replaced by those of all-'(' and all-')' strings.</p>"
        ),
        "hypothesis": _hypothesis(f) + _scrubs(f, notes) + _paths(f),
        "attack": _attack(f),
    }
