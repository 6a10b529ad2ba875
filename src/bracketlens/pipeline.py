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
   unless the mean-ablation table is asked for), which names the start-close
   component;
6. circuits: the elevation and negative-head analyses, from the two passes;
7. interventions: resampling tests, path patching and attribution patching on
   the same held-out strings, from the clean pass of 5, with bootstrap intervals.
   Every patched run computes the last block at position 0 only (``class_only``).

Which stages each command runs is one table, :data:`bracketlens.plan.COMMAND_STAGES`;
what a stage asks of the passes before it (the negative head's feeders, the whole
ablation table, the clean slices the interventions read) is declared once, in
:class:`bracketlens.plan.PassPlan`. Beside steps 1-7, "explorer" (8) adds the weights
and per-component means the page's own model runs on (one more pass), and "explain"
(9) which causal model the network runs, by interchange interventions (the commands
search as hard as ``bracketlens explain``; the library's default is a lighter search),
and "discover" (10) the circuit found without a template
(:mod:`bracketlens.discovery.stage`), on fewer pairs than ``bracketlens discover``'s.
``discover`` reads only the model and the strings, so it starts first, in a child process
where a second core allows, and its result is collected after stage 8. Stages 5 and 7
read the held-out strings and the heads, nothing 4, 6 and 8 compute: where the second core
is free (not while ``discover``'s child holds it) they run in a child process beside those
(:mod:`bracketlens.beside`), which sends back only their findings. ``explain`` runs last,
in this process: its own search runs in two processes where there are two cores, which it
could not do in a child beside the others (a daemonic child may not start processes of its
own). A new stage adds a member to :class:`~bracketlens.plan.Stage`, a field to
:class:`Analysis` and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from bracketlens import stages as st
from bracketlens.algorithms.search import Search
from bracketlens.algorithms.store import ExplainStore, stored_explain
from bracketlens.analysis import Analysis, Split, meta
from bracketlens.attribution.directions import unbalanced_direction_post_ln
from bracketlens.beside import Beside
from bracketlens.data.dataset import BracketDataset
from bracketlens.discovery.store import StoredDiscovery
from bracketlens.explorer.export import explorer_export
from bracketlens.localisation import Localisation, locate_heads
from bracketlens.model.transformer import BracketTransformer
from bracketlens.passes import observe
from bracketlens.plan import COMMAND_STAGES, DEFAULT_CAUSAL_N, PassPlan, Stage, parse_stages


def run(
    model: BracketTransformer,
    data: BracketDataset,
    *,
    seed: int = 0,
    causal_n: int = DEFAULT_CAUSAL_N,
    stages: Iterable[Stage | str] = COMMAND_STAGES["analyze"],
    halves: bool = True,
    weights: str = "bundled default",
    attack_strings: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    search: Search | None = None,
    store: ExplainStore | None = None,
) -> Analysis:
    """Run the analysis on ``data``: localisation always, then the ``stages`` asked for.

    ``search`` is explain's (default :meth:`Search.quick`: seconds, the registered models
    alone; the commands pass ``--search``, whose default is :class:`Search`'s own).
    ``store`` holds explain's results (:mod:`bracketlens.algorithms.store`) and the
    discover stage's (:mod:`bracketlens.discovery.store`): one found there is reused, one
    computed is kept there; None neither reads nor writes.
    """
    step = progress or (lambda _: None)
    chosen = parse_stages(stages)
    plan = PassPlan.of(chosen)
    st.check_data(data)
    device = next(model.parameters()).device.type
    with ExitStack() as stack:  # leaving it on an error stops what runs beside
        # discovery reads only the model and the strings: a child beside stages 2 to 8
        discovered = (
            stack.enter_context(StoredDiscovery(model, data, seed=seed, store=store,
                                                device=device))
            if Stage.DISCOVER in chosen
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
        # 5 and 7 need only the held-out strings and the heads: a child runs them beside 4, 6
        # and 8, unless discovery's child holds the second core already (then they run here)
        busy = discovered is not None and discovered.in_child
        intervene = Stage.INTERVENTIONS in chosen
        beside = stack.enter_context(
            Beside(st.held_out, model, causal, roles, heads, plan, seed, intervene,
                   device=None if busy else device)
        )  # fmt: skip
        step("the pass at the read position")
        read = st.read_pass(model, data, roles, heads, groups, plan)
        neurons = st.neurons(model, read, data, fit, roles, direction)
        fields: dict[str, Any] = {}
        if Stage.CIRCUITS in chosen:
            step("the circuit analyses")
            fields |= st.circuits(model, data, seen, read, direction, roles, heads.negative(data))
        if Stage.EXPLORER in chosen:
            step("the explorer's weights and means")
            fields["explorer"] = explorer_export(model, data, roles, heads.negative())
        step(_HELD_OUT[intervene])
        held = beside.result()
        observed = st.observed(seen, data, halves)
        result = Analysis(
            meta=meta(model, data, weights),
            data=data,
            split=Split(seed, len(data), int(fit.sum()), len(held_out), len(causal)),
            evaluation=observed.evaluation,
            accuracy=observed.accuracy,
            group_accuracy=observed.group_accuracy,
            ln_final_r2=observed.ln_final_r2,
            attribution=attribution.centred(data.labels),
            localisation=heads.complete(neurons, held.start_close),
            roles=roles,
            roles_source=source,
            ablations=held.table,
            attack=st.rescore(model, attack_strings),
            **fields,
            **held.intervened,
        )
        if discovered is not None:
            step("the circuit, found without a template")
            result = replace(result, discovery=discovered.result())
    if Stage.EXPLAIN in chosen:  # last: its search splits itself over two cores
        step("what the model computes")
        found = stored_explain(model, data, seed, search or Search.quick(), store)
        result = replace(result, explanation=found)
    return result


_HELD_OUT = {
    False: "ablating every component",
    True: "ablating every component; resampling, path and attribution patching",
}


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
    search: Search | None = None,
    store: ExplainStore | None = None,
) -> Analysis:
    """What ``bracketlens report`` renders: the analysis, ``explain`` and the explorer.

    ``search`` and ``store`` are explain's, as in :func:`run` (``bracketlens report``
    passes ``Search()`` and the store of :func:`~bracketlens.algorithms.store.store_dir`).
    """
    return run(
        model,
        data,
        stages=COMMAND_STAGES["report"],
        seed=seed,
        causal_n=causal_n,
        weights=weights,
        attack_strings=attack_strings,
        progress=progress,
        search=search,
        store=store,
    )
