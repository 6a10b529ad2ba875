"""The explorer as a Jupyter widget (anywidget), on the same JavaScript module as the report."""

from __future__ import annotations

from functools import cache
from typing import Any

from bracketlens.circuits.elevation import Roles
from bracketlens.data.dataset import BracketDataset
from bracketlens.data.tokens import tokenize
from bracketlens.errors import BracketLensError
from bracketlens.explorer.export import explorer_export
from bracketlens.explorer.html import module_source
from bracketlens.model.transformer import BracketTransformer

#: strings averaged for mean ablation (and localised on) when no data is given
DEFAULT_N = 1000


@cache
def _widget_class() -> type:
    """The anywidget class, built on first use so that the library imports without anywidget."""
    try:
        import anywidget
        import traitlets
    except ImportError as e:
        raise BracketLensError(
            "the notebook explorer needs anywidget: pip install 'bracketlens[notebook]'"
        ) from e

    class Explorer(anywidget.AnyWidget):
        """The bracketlens explorer; ``string`` and ``compare`` follow the text boxes."""

        _esm = module_source()
        payload = traitlets.Dict().tag(sync=True)
        string = traitlets.Unicode("(())").tag(sync=True)
        compare = traitlets.Unicode("").tag(sync=True)

    return Explorer


def explore(
    model: BracketTransformer | None = None,
    string: str = "(())",
    *,
    data: BracketDataset | None = None,
    roles: Roles | None = None,
    negative_head: tuple[int, int] | None = None,
    compare: str = "",
) -> Any:
    """A Jupyter widget running the model in the browser: type a string, watch the circuit.

    Args:
        model: the model (the bundled default when None).
        string: the string shown first.
        data: strings for the mean-ablation means (default: 1,000 fresh ones).
        roles: the elevation head and its read position; localised on ``data`` when None
            (with the negative head), which takes some seconds.
        negative_head: (layer, head) of the negative head, highlighted with the elevation head.
        compare: the second string, the source for patching.

    Returns:
        An anywidget widget; display it (the last expression of a cell) to see it.
    """
    widget_class = _widget_class()
    for text in (string, compare):
        tokenize(text)  # a bad character or too long: say so here, not only in the widget
    if model is None:
        from bracketlens.weights.resolve import load_model

        model = load_model()
    if data is None:
        from bracketlens.data.generate import evaluation_set

        data = evaluation_set(DEFAULT_N, seed=0)
    if roles is None:
        from bracketlens.pipeline import localise

        found = localise(model, data)
        roles = found.roles()
        if negative_head is None:
            negative_head = found.negative()
    export = explorer_export(model, data, roles, negative_head)
    return widget_class(payload=export.to_json(), string=string, compare=compare)
