"""Model: config, the hooked transformer, checkpoints, predictions, training."""

from bracketlens.model.checkpoint import read_model, read_sidecar, save_checkpoint
from bracketlens.model.config import ModelConfig
from bracketlens.model.predict import Evaluation, evaluate, predict_logits, predict_proba
from bracketlens.model.transformer import BracketTransformer

__all__ = [
    "BracketTransformer",
    "Evaluation",
    "ModelConfig",
    "evaluate",
    "predict_logits",
    "predict_proba",
    "read_model",
    "read_sidecar",
    "save_checkpoint",
]
