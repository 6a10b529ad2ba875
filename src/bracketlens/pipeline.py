"""The whole analysis as one data flow; every command runs stages of :func:`run`.

Passes over the data, in order (each stage is named after what it adds):

1. split: ``seed`` (the command's ``--seed``) splits the strings into a fit half,
   where roles are localised, and a held-out half, where interventions run;
2. observe: one role-free forward pass over every string (logits, ``ln_final``
   moments, per-head ``z`` and MLP ``post`` at position 0, every head's attention
   row from query 0, how evenly each layer-0 head attends from each query);
3. localise: the heads and the read position from that pass, on the fit half;
4. read: one pass for the slices at the read position (and what feeds the
   negative head), from which the MLP neurons are named;
5. ablate: one clean pass over min(``causal_n``, held-out half) strings (component
   means, block inputs, class logits, and the activation slices the interventions
   read), then mean ablation of every component on them (those starting with ')'
   unless the "mean_ablation" table is asked for), which names the start-close
   component;
6. circuits: the elevation and negative-head analyses, from the two passes;
7. interventions: resampling tests, path patching and attribution patching on
   the same held-out strings, from the clean pass of 5, with bootstrap intervals.
   Every patched run computes the last block at position 0 only (``class_only``).

``analyze``/``report`` run "circuits" and "interventions", ``circuit`` runs
"interventions" and "mean_ablation", ``seeds`` stops after localisation; ``report``
adds "explorer" (8: the weights and per-component means the page's own model runs
on, one more pass) and "explain" (9: which causal model the network runs, by
interchange interventions, with a lighter search than ``bracketlens explain``'s;
the library's :func:`analyze` runs it too). ``explain`` reads only the model and
the strings, so it starts first, in a child process where a second core allows
(:mod:`bracketlens.beside`), and its result is collected last. A new stage adds a
field to :class:`Analysis` and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import replace

from bracketlens import stages as st
from bracketlens.algorithms import Search, explain
from bracketlens.analysis import Analysis, Split, meta
from bracketlens.attribution.directions import unbalanced_direction_post_ln
from bracketlens.beside import Beside
from bracketlens.data.dataset import BracketDataset
from bracketlens.engine import observe
from bracketlens.localisation import Localisation, locate_heads
from bracketlens.model.transformer import BracketTransformer

DEFAULT_CAUSAL_N = 5_000
EVERY_STAGE = ("circuits", "interventions")


def run(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    seed: int = 0,
    causal_n: int = DEFAULT_CAUSAL_N,
    stages: Collection[str] = EVERY_STAGE,
    halves: bool = True,
    weights: str = "bundled default",
    attack_strings: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Run the analysis on ``data``: localisation always, then the ``stages`` asked for."""
    step = progress or (lambda _: None)
    st.check_data(data)
    with ExitStack() as stack:  # leaving it on an error stops what runs beside
        # explain reads only the model and the strings: it runs beside stages 2 to 8
        explained = (
            stack.enter_context(Beside(explain, model, data, seed=seed, search=Search.quick(),
                                       device=next(model.parameters()).device.type))
            if "explain" in stages
            else None
        )  # fmt: skip
        groups, held_out, causal = st.split(data, seed, causal_n, halves)
        fit = groups == 0
        step("one pass over the data")
        seen = observe(model, data, groups=groups)
        direction = seen.final_fit([0]).pull_back(unbalanced_direction_post_ln(model))
        attribution = seen.components_at_0(model, data.tokens, direction)
        heads = locate_heads(model, seen, data, fit, attribution)
        roles, source = st.roles_of(heads)
        step("the pass at the read position")
        read = st.read_pass(model, data, roles, heads, groups, "circuits" in stages)
        neurons = st.neurons(model, read, data, fit, roles, direction)
        step("ablating every component")
        clean, ablations, start_close = st.ablate(
            model, causal, "mean_ablation" in stages, roles, heads, "interventions" in stages
        )
        result = Analysis(
            meta=meta(model, data, weights),
            data=data,
            split=Split(seed, len(data), int(fit.sum()), len(held_out), len(causal)),
            **st.observed(seen, data, halves),
            attribution=attribution.centred(data.labels),
            localisation=Localisation(**vars(heads), **neurons, start_close_component=start_close),
            roles=roles,
            roles_source=source,
            ablations=ablations,
            attack=st.rescore(model, attack_strings),
        )
        if "circuits" in stages:
            step("the circuit analyses")
            result = st.circuits(result, model, seen, read, direction)
        if "interventions" in stages:
            step("resampling, path and attribution patching")
            result = st.interventions(result, model, causal, seed, clean)
        if "explorer" in stages:
            step("the explorer's weights and means")
            result = st.explorer(result, model)
        if explained is not None:
            step("what the model computes")
            result = replace(result, explanation=explained.result())
    return result


def localise(model: BracketTransformer, data: BracketDataset) -> Localisation:
    """Name every role of the circuit from measurements on all of ``data`` (no split)."""
    return run(model, data, stages=(), halves=False, causal_n=len(data)).localisation


def analyze(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    seed: int = 0,
    causal_n: int = DEFAULT_CAUSAL_N,
    weights: str = "bundled default",
    attack_strings: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Every stage: what ``bracketlens analyze`` prints and ``report`` renders (explorer too)."""
    return run(
        model,
        data,
        stages=(*EVERY_STAGE, "explain", "explorer"),
        seed=seed,
        causal_n=causal_n,
        weights=weights,
        attack_strings=attack_strings,
        progress=progress,
    )
