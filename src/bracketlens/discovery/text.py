"""The terminal summary of a discovered circuit."""

from __future__ import annotations

from bracketlens.discovery.pairs import EDITS
from bracketlens.discovery.result import Discovery


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def discovery_text(d: Discovery) -> str:
    """Lines saying what was found: the circuit, f at each budget, CPR and CMD, the
    node optimum and the method's gap to it."""
    lines = [
        f"circuit discovery: {d.method}, {d.level} level, {d.ablation} ablation, "
        f"{d.n_pairs:,} pairs ({d.n_dropped:,} strings dropped), {d.n_live_edges:,} edges",
    ]
    if d.faithfulness_reason is not None:
        lines.append(f"faithfulness: not defined ({d.faithfulness_reason})")
    lines.append("budget     edges   f       " + "  ".join(f"{e:>13}" for e in EDITS))
    for i, b in enumerate(d.budgets):
        per_edit = "  ".join(f"{_f(d.by_edit[e][i]):>13}" for e in EDITS)
        lines.append(f"{b.fraction:>7.1%}  {b.n_edges:>7,}   {_f(b.faithfulness):<6}  {per_edit}")
    lines.append(f"CPR {_f(d.cpr)} (higher is better), CMD {_f(d.cmd)} (0 is best)")
    if d.circuit is None:
        lines.append(f"circuit: none ({d.circuit_reason})")
    else:
        c = d.circuit
        lines.append(
            f"circuit: {c.n_edges:,} edges, f {c.faithfulness:.3f} on the half it was chosen "
            f"on, {c.faithfulness_held_out:.3f} held out; components {', '.join(c.components)}"
        )
        for e in sorted(c.edges, key=lambda e: -abs(e.score))[:10]:
            at = "" if e.position is None else f" @{e.position}"
            lines.append(f"  {e.sender} -> {e.receiver} ({e.input}){at}  score {e.score:+.3f}")
    if d.optimum is not None:
        o = d.optimum
        lines.append(
            f"node optimum (over node-induced circuits; edge circuits are richer): best "
            f"{{{', '.join(o.best)}}} f {o.best_faithfulness:.3f}"
        )
        for r in o.by_size:
            lines.append(
                f"  size {r.size}: optimum f {r.faithfulness:.3f} {{{', '.join(r.components)}}}; "
                f"{d.method}'s {{{', '.join(r.method_components)}}} f {r.method_faithfulness:.3f}, "
                f"gap {r.gap:.3f}"
            )
    return "\n".join(lines)
