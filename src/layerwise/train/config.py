"""What ``train`` takes and returns: the config, one record per epoch, the result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import LayerwiseError

__all__ = ["TrainConfig", "EpochRecord", "TrainResult"]


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32  # global: each of N DDP ranks takes batch_size // N
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 3e-3  # Adam; the CLI uses 0.1 for SGD
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # L2 (coupled) for both optimizers
    schedule: Literal["cosine", "step", "none"] = "cosine"  # stepped once per epoch
    step_milestones: tuple[int, ...] = ()  # epochs where "step" multiplies lr by step_gamma; () = 50%, 75%
    step_gamma: float = 0.1
    seed: int = 0  # data order only; model init is the caller's
    device: str = "cpu"
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max global gradient norm

    def validate(self) -> None:
        def bad(what: str) -> LayerwiseError:
            return LayerwiseError(f"invalid training config: {what}")
        if self.epochs < 0:
            raise bad(f"epochs={self.epochs}; use 0 or more")
        if self.batch_size < 1:
            raise bad(f"batch_size={self.batch_size}; use 1 or more")
        if self.optimizer not in ("sgd", "adam"):
            raise bad(f"optimizer={self.optimizer!r}; use 'sgd' or 'adam'")
        if self.schedule not in ("cosine", "step", "none"):
            raise bad(f"schedule={self.schedule!r}; use 'cosine', 'step' or 'none'")
        if not self.lr > 0:
            raise bad(f"lr={self.lr}; use a positive learning rate")
        if self.seed < 0:
            raise bad(f"seed={self.seed}; use a non-negative integer")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad(f"label_smoothing={self.label_smoothing}; use a value in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad(f"grad_clip={self.grad_clip}; use a positive norm or None")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "step_milestones" in kw:
            kw["step_milestones"] = tuple(kw["step_milestones"])
        return cls(**kw)


@dataclass
class EpochRecord:
    epoch: int  # 0-based
    train_loss: float  # mean objective over the epoch's batches (task loss + extra_loss)
    train_acc: float
    val_loss: float  # mean cross-entropy on data.val
    val_acc: float
    time_s: float  # training time of the epoch (summed over interruptions), validation excluded
    lr: float  # learning rate used during the epoch


@dataclass
class TrainResult:
    history: list[EpochRecord]
    epochs_completed: int
    interrupted: bool
    checkpoint: Path | None  # the checkpoint on disk now (None without out_dir)
    final_val_acc: float  # of the last completed epoch; nan if none
    final_val_loss: float
    interrupted_step: int = 0  # batches done in epoch ``epochs_completed`` when interrupted
    world_size: int = 1
    time_s: float = 0.0  # wall time of this call
