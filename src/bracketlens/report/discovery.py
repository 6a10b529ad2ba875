"""The report's section "The circuit, found without a template": its prose."""

from __future__ import annotations

import html

from bracketlens.analysis import Analysis
from bracketlens.discovery.stage import roles_sentence


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def discovery_html(f: Analysis) -> str:
    """What discovery found, the budget it needed, and the course's roles in its circuit."""
    found = f.discovery
    if found is None:
        return "<p>Circuit discovery was not run.</p>"
    d = found.result
    if d is None:
        return f'<p class="note">Circuit discovery found no circuit: {html.escape(str(found.reason))}</p>'
    intro = (
        f"<p>Without the course's template: every edge between components at one position "
        f"(a head's query, key or value input, an MLP's input, the logits at position 0) is "
        f"scored by {html.escape(d.method)} on one half of {d.n_pairs:,} counterfactual pairs "
        f"built from the first {found.n_strings:,} strings (an edit that unbalances a "
        f"balanced string, each pair in both orders), circuits are the top edges, and every "
        f"edge outside a circuit carries its {html.escape(d.ablation)} value. Faithfulness f is "
        "(m(circuit) &minus; m(none)) / (m(model) &minus; m(none)), m the logit difference "
        f"towards the clean label averaged over pairs. CPR {_f(d.cpr)} (the area under f, "
        f"higher is better), CMD {_f(d.cmd)} (the area under |1 &minus; f|, 0 is best), over "
        f"{d.n_live_edges:,} live edges. <code>bracketlens discover</code> runs on more pairs "
        "and offers the other methods and ablations.</p>"
    )
    if d.faithfulness_reason is not None:
        return intro + f'<p class="note">{html.escape(d.faithfulness_reason)}</p>'
    sentence = f"<p><b>{html.escape(roles_sentence(d, f.localisation))}</b></p>"
    o = d.optimum
    optimum = (
        ""
        if o is None
        else (
            f"<p>The exact optimum over the node-induced circuits of the heads and MLPs "
            f"(every subset; edge circuits are richer): best {{{html.escape(', '.join(o.best))}}} "
            f"at f {o.best_faithfulness:.3f}; the largest gap between it and the "
            f"{html.escape(d.method)} ranking of components at one size is "
            f"{max(r.gap for r in o.by_size):.3f}.</p>"
        )
    )
    return intro + sentence + optimum
