"""Checkpoints: written atomically, loaded without running pickled code.

A layerwise checkpoint is a dict of plain tensors and containers, so a weights-only
``torch.load`` reads it::

    {"format": "layerwise.checkpoint/1",
     "model": state_dict, "optimizer": state_dict | None, "scheduler": state_dict | None,
     "epoch": epochs completed, "step": batches done in epoch ``epoch`` (0 between epochs),
     "partial": running sums of the unfinished epoch, "history": [EpochRecord as dict, ...],
     "config": TrainConfig as dict, "rng": {"torch": uint8 tensor, "cuda": [uint8 tensor, ...]}}
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import CheckpointError
from ..storage import atomic_torch_save, safe_torch_load

FORMAT = "layerwise.checkpoint/1"

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_weights", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def _plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, *, epoch: int = 0, step: int = 0, history: Iterable[Any] = (),
                    config: Any = None, partial: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file intact).

    ``epoch`` counts completed epochs; ``step`` the batches already done in epoch ``epoch``.
    The global torch RNG state (and CUDA's, when initialised) is stored so dropout resumes exactly.
    """
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    state = {
        "format": FORMAT,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "partial": dict(partial or {}),
        "history": [_plain(h) for h in history],
        "config": _plain(config) if config is not None else {},
        "rng": {"torch": torch.get_rng_state(), "cuda": list(cuda_rng)},
    }
    state.update(extra or {})
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a layerwise checkpoint (``weights_only=True``); anything else is a CheckpointError."""
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or not str(obj.get("format", "")).startswith("layerwise.checkpoint/"):
        raise CheckpointError(f"{path} is not a layerwise training checkpoint (no 'format' marker): "
                              "use load_weights() / --checkpoint for a plain state_dict")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{path} has format {obj['format']!r}, this layerwise reads {FORMAT!r}: "
                              "retrain with this version or use a matching layerwise version")
    missing = [k for k in ("model", "epoch", "step", "history") if k not in obj]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is not a complete layerwise checkpoint")
    return obj


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj) and \
        any(isinstance(v, torch.Tensor) for v in obj.values())


def _state_dict_of(obj: Any, path: Any) -> dict:
    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("layerwise.checkpoint/"):
        return obj["model"]
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                return obj[key]
    if _is_state_dict(obj):
        return obj
    raise CheckpointError(f"{path} holds no model weights (neither a layerwise checkpoint nor a state_dict): "
                          "pass a .pt file written by `layerwise train` or by torch.save(model.state_dict())")


def _first(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def fit_state_dict(model: nn.Module, state: dict, path: Any = "checkpoint") -> dict:
    """``state`` with a ``module.`` prefix stripped if needed; CheckpointError if it does not fit ``model``."""
    own = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the model"
              for k in own if k in state and isinstance(state[k], torch.Tensor)
              and isinstance(own[k], torch.Tensor) and state[k].shape != own[k].shape]
    problems = []
    if shapes:
        problems.append("shape mismatch: " + _first(shapes))
    if missing:
        problems.append("missing keys: " + _first(missing))
    if unexpected:
        problems.append("unexpected keys: " + _first(unexpected))
    if problems:
        raise CheckpointError(f"{path} does not fit the model ({'; '.join(problems)}): load weights trained with "
                              "the same --model and --dataset (same number of classes and input shape)")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights into ``model`` from a layerwise checkpoint or a plain state_dict file.

    Keys and shapes are checked first, so a mismatch is one CheckpointError naming the first few
    offending keys and the fix, never a half-loaded model. Returns ``model``.
    """
    obj = safe_torch_load(path)
    target = unwrap(model)
    state = fit_state_dict(target, _state_dict_of(obj, path), path)
    target.load_state_dict(state, strict=True)
    return model
