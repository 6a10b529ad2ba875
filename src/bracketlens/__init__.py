"""bracketlens: mechanistic interpretability of a balanced-bracket classifier.

>>> from bracketlens import load_model, tokenize  # doctest: +SKIP
>>> model = load_model()  # the bundled default checkpoint  # doctest: +SKIP

The public names load on first use (a module-level ``__getattr__``), so that
``import bracketlens`` and ``bracketlens --help`` do not pay for torch and
transformer-lens until a name that needs them is touched.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from bracketlens.errors import BracketLensError

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "BracketDataset": "bracketlens.data",
    "FailureGroup": "bracketlens.data",
    "FailureTypes": "bracketlens.data",
    "decode": "bracketlens.data",
    "evaluation_set": "bracketlens.data",
    "failure_groups": "bracketlens.data",
    "failure_types": "bracketlens.data",
    "is_balanced": "bracketlens.data",
    "is_balanced_tokens": "bracketlens.data",
    "near_miss_set": "bracketlens.data",
    "tokenize": "bracketlens.data",
    "BracketTransformer": "bracketlens.model",
    "Evaluation": "bracketlens.model",
    "ModelConfig": "bracketlens.model",
    "evaluate": "bracketlens.model",
    "load_model": "bracketlens.weights.resolve",
    "predict_proba": "bracketlens.model",
    "save_checkpoint": "bracketlens.model",
    "explore": "bracketlens.explorer.widget",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from bracketlens.data import (
        BracketDataset,
        FailureGroup,
        FailureTypes,
        decode,
        evaluation_set,
        failure_groups,
        failure_types,
        is_balanced,
        is_balanced_tokens,
        near_miss_set,
        tokenize,
    )
    from bracketlens.explorer.widget import explore
    from bracketlens.model import (
        BracketTransformer,
        Evaluation,
        ModelConfig,
        evaluate,
        predict_proba,
        save_checkpoint,
    )
    from bracketlens.weights.resolve import load_model

__all__ = [
    "BracketDataset",
    "BracketLensError",
    "BracketTransformer",
    "Evaluation",
    "FailureGroup",
    "FailureTypes",
    "ModelConfig",
    "__version__",
    "decode",
    "evaluate",
    "evaluation_set",
    "explore",
    "failure_groups",
    "failure_types",
    "is_balanced",
    "is_balanced_tokens",
    "load_model",
    "near_miss_set",
    "predict_proba",
    "save_checkpoint",
    "tokenize",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        # subpackages load on access too, so that
        # `import bracketlens; bracketlens.data.tokenize(...)` works
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'bracketlens' has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
