"""The live explorer: the model running in the browser, in the report and in notebooks.

:func:`explorer_export` turns (model, data, roles) into the payload the
JavaScript module (``static/explorer.js``) reads: weights, per-position means
for mean ablation, the localised roles. :func:`explorer_section` puts it in the
report; :func:`explore` makes an anywidget widget of it for Jupyter.
"""

from bracketlens.explorer.export import ExplorerExport, explorer_export
from bracketlens.explorer.html import explorer_page, explorer_section, module_source
from bracketlens.explorer.widget import explore

__all__ = [
    "ExplorerExport",
    "explore",
    "explorer_export",
    "explorer_page",
    "explorer_section",
    "module_source",
]
