"""bracketlens: mechanistic interpretability of a balanced-bracket classifier.

>>> from bracketlens import load_model, tokenize  # doctest: +SKIP
>>> model = load_model()  # the bundled default checkpoint  # doctest: +SKIP
"""

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
from bracketlens.errors import BracketLensError
from bracketlens.model import (
    BracketTransformer,
    Evaluation,
    ModelConfig,
    evaluate,
    load_model,
    predict_proba,
    save_checkpoint,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # bracketlens.explore: imported on first use (it pulls in the analysis stages)
    if name == "explore":
        from bracketlens.explorer.widget import explore

        return explore
    raise AttributeError(f"module 'bracketlens' has no attribute {name!r}")


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
