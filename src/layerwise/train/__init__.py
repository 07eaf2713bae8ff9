"""Training: one loop for every model, with checkpoints, exact resume, Ctrl-C handling and DDP."""

from .checkpoint import FORMAT, load_checkpoint, load_weights, save_checkpoint
from .evaluation import Evaluation, Predictions, evaluate, predict
from .config import EpochRecord, TrainConfig, TrainResult
from .loop import epoch_batches, train

__all__ = [
    "FORMAT", "TrainConfig", "EpochRecord", "TrainResult", "Evaluation", "Predictions",
    "train", "evaluate", "predict", "save_checkpoint", "load_checkpoint", "load_weights", "epoch_batches",
]
