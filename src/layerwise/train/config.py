"""What ``train`` takes and returns: the config, one record per epoch, the result."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

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
    augment: bool = False  # image batches: random crop (4-pixel zero padding), flip where the data allows

    def validate(self) -> None:
        """Raise ConfigError (a LayerwiseError, one line) for the first field with a bad type or value."""
        def bad(what: str) -> ConfigError:
            return ConfigError(f"invalid training config: {what}")

        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if not _is_int(v):
                raise bad(f"{name}={_brief(v)} is not an integer; use a whole number >= {low}")
            if v < low:
                raise bad(f"{name}={v}; use {low} or more")

        def real(name: str, rule: str, ok) -> None:
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or not ok(v):
                raise bad(f"{name}={_brief(v)}; use {rule}")

        integer("epochs", 0)
        integer("batch_size", 1)
        if not isinstance(self.augment, bool):
            raise bad(f"augment={_brief(self.augment)}; use True or False")
        if self.optimizer not in ("sgd", "adam"):
            raise bad(f"optimizer={_brief(self.optimizer)}; use 'sgd' or 'adam'")
        if self.schedule not in ("cosine", "step", "none"):
            raise bad(f"schedule={_brief(self.schedule)}; use 'cosine', 'step' or 'none'")
        real("lr", "a positive finite learning rate (e.g. 3e-3 for adam, 0.1 for sgd)", lambda v: v > 0)
        real("momentum", "a value in [0, 1) (e.g. 0.9)", lambda v: 0 <= v < 1)
        real("weight_decay", "0 or a small positive L2 factor (e.g. 5e-4)", lambda v: v >= 0)
        real("step_gamma", "a factor in (0, 1] (e.g. 0.1)", lambda v: 0 < v <= 1)
        milestones = self.step_milestones
        if not isinstance(milestones, (tuple, list)) or not all(_is_int(m) and m >= 1 for m in milestones):
            raise bad(f"step_milestones={_brief(milestones)}; use a tuple of epoch numbers >= 1 (or () for 50%, 75%)")
        integer("seed", 0)
        if not isinstance(self.device, str) or not self.device:
            raise bad(f"device={_brief(self.device)}; use 'cpu' or 'cuda'")
        real("label_smoothing", "a value in [0, 1)", lambda v: 0 <= v < 1)
        if self.grad_clip is not None:
            real("grad_clip", "a positive finite norm (e.g. 1.0) or None", lambda v: v > 0)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config stored as a dict (unknown keys ignored); ConfigError for a non-dict or bad field."""
        if not isinstance(d, dict):
            raise ConfigError(f"invalid training config: expected a dict of fields, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if isinstance(kw.get("step_milestones"), list):
            kw["step_milestones"] = tuple(kw["step_milestones"])
        config = cls(**kw)
        config.validate()
        return config


def _brief(v) -> str:
    """A one-line repr of at most 60 characters (a tensor or array is named, not printed)."""
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, numbers.Number):
        return f"<{type(v).__name__} of shape {tuple(v.shape)}>"
    text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


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
