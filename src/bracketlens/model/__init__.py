"""Model: config, the hooked transformer, checkpoints, predictions, training."""

from bracketlens.model.checkpoint import load_model, read_sidecar, save_checkpoint
from bracketlens.model.predict import Evaluation, evaluate, predict_logits, predict_proba
from bracketlens.model.transformer import BracketTransformer, ModelConfig

__all__ = [
    "BracketTransformer",
    "Evaluation",
    "ModelConfig",
    "evaluate",
    "load_model",
    "predict_logits",
    "predict_proba",
    "read_sidecar",
    "save_checkpoint",
]
