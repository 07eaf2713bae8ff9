"""Checkpoints: written atomically, loaded without running pickled code, every field checked.

A layerwise checkpoint is a dict of plain tensors and containers, so a weights-only
``torch.load`` reads it::

    {"format": "layerwise.checkpoint/1",
     "model": state_dict, "optimizer": state_dict | None, "scheduler": state_dict | None,
     "epoch": epochs completed, "step": batches done in epoch ``epoch`` (0 between epochs),
     "partial": running sums of the unfinished epoch, "history": [EpochRecord as dict, ...],
     "config": TrainConfig as dict, "rng": {"torch": uint8 tensor, "cuda": [uint8 tensor, ...]},
     "global_batch": int, "world_size": int,
     "run": {"model", "architecture", "dataset", "input_shape", "num_classes", "train_size",
             "seed", "optimizer"}}   # who wrote it (see run_identity); absent in older files

:func:`load_checkpoint` checks the type and range of every field above (model-independent checks)
and raises :class:`CheckpointError` with one line naming the field; :func:`check_optimizer_state`
and :func:`check_scheduler_state` check the optimizer / scheduler states against the ones a
resumed run builds (kind, parameter count, tensor shapes) before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import CheckpointError, LayerwiseError
from ..storage import atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)

FORMAT = "layerwise.checkpoint/1"

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_weights", "unwrap", "check_fields",
           "check_optimizer_state", "check_scheduler_state", "optimizer_kind", "scheduler_kind", "run_identity"]


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


RUN_FIELDS = ("model", "architecture", "dataset", "input_shape", "num_classes", "train_size", "seed", "optimizer")
_PARTIAL = ("loss_sum", "correct", "seen", "time_s")
_RECORD = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "time_s", "lr")
_OPT_STATE = {"adam": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, "sgd": {"momentum_buffer"}}
_OPT_GROUP = {"adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
              "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov")}
_SCHED_KEYS = {"cosine": ("T_max", "eta_min"), "step": ("milestones", "gamma")}
_FIX = ("it is damaged or was not written by `layerwise train`: start afresh in another --out (or replace it with "
        "--overwrite)")


def invalid(path: Any, field: str, problem: str, fix: str = _FIX) -> CheckpointError:
    """The one-line error for a bad checkpoint field."""
    return CheckpointError(f"checkpoint {path} is invalid: {field} {problem}; {fix}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_real(v) and math.isfinite(v)


def _show(v: Any) -> str:
    """A short one-line description of a value for an error message."""
    scalar = (type(None), bool, int, float, str)
    if isinstance(v, (list, tuple)) and not v:
        text = f"an empty {type(v).__name__}"
    elif isinstance(v, (list, tuple)) and len(v) <= 4 and all(isinstance(x, scalar) for x in v):
        text = repr(v)  # e.g. betas (0.9,)
    elif isinstance(v, (dict, list, tuple, torch.Tensor)):
        text = f"a {type(v).__name__}"
    else:
        text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _safe_load(path: str | os.PathLike) -> Any:
    """safe_torch_load, with every failure (whatever torch raises on garbage) as a CheckpointError."""
    try:
        with warnings.catch_warnings():  # garbage makes torch warn about pickle protocols first
            warnings.simplefilter("ignore")
            return safe_torch_load(path)
    except CheckpointError:
        raise
    except Exception as exc:  # e.g. an exception with an empty message inside safe_torch_load
        raise CheckpointError(f"cannot load {path} as a weights-only torch file ({type(exc).__name__}): it is "
                              "truncated, corrupted or holds pickled objects: use a checkpoint written by "
                              "layerwise") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a layerwise checkpoint (``weights_only=True``) and check every field (see the module
    docstring); anything else is a CheckpointError naming the field and the fix."""
    obj = _safe_load(path)
    if not isinstance(obj, dict) or not str(obj.get("format", "")).startswith("layerwise.checkpoint/"):
        raise CheckpointError(f"{path} is not a layerwise training checkpoint (no 'format' marker): "
                              "use load_weights() / --checkpoint for a plain state_dict")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{path} has format {obj['format']!r}, this layerwise reads {FORMAT!r}: "
                              "retrain with this version or use a matching layerwise version")
    missing = [k for k in ("model", "epoch", "step", "history") if k not in obj]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is not a complete layerwise checkpoint")
    check_fields(obj, path)
    return obj


def check_fields(ck: dict, path: Any = "checkpoint") -> None:
    """Type and range of every field of a checkpoint dict, independent of any model."""
    model = ck["model"]
    if not isinstance(model, dict) or not model:
        raise invalid(path, "'model'", f"is {_show(model)}, not a non-empty state_dict")
    for k, v in model.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise invalid(path, f"'model' entry {_show(k)}", f"is {_show(v)}, not a tensor under a string key")
    for name in ("epoch", "step"):
        if not _is_int(ck[name]) or ck[name] < 0:
            raise invalid(path, f"{name!r}", f"is {_show(ck[name])}, not an integer >= 0")
    for name in ("global_batch", "world_size"):
        if name in ck and (not _is_int(ck[name]) or ck[name] < 1):
            raise invalid(path, f"{name!r}", f"is {_show(ck[name])}, not an integer >= 1")
    _check_partial(ck.get("partial", {}), path)
    _check_history(ck["history"], path)
    _check_config(ck.get("config", {}), path)
    _check_rng(ck.get("rng", {}), path)
    _check_run(ck.get("run"), path)
    opt = ck.get("optimizer")
    if opt is not None:
        _check_optimizer_shape(opt, path)
    sched = ck.get("scheduler")
    if sched is not None:
        if not isinstance(sched, dict) or not all(isinstance(k, str) for k in sched):
            raise invalid(path, "'scheduler'", f"is {_show(sched)}, not a scheduler state_dict")
        if "last_epoch" in sched and not _is_int(sched["last_epoch"]):
            raise invalid(path, "'scheduler.last_epoch'", f"is {_show(sched['last_epoch'])}, not an integer")


def _check_partial(partial: Any, path: Any) -> None:
    if not isinstance(partial, dict):
        raise invalid(path, "'partial'", f"is {_show(partial)}, not a dict of running sums")
    for k, v in partial.items():
        if k not in _PARTIAL:
            raise invalid(path, f"'partial.{k}'", f"is not one of {', '.join(_PARTIAL)}")
        if not _finite(v) or (k != "loss_sum" and v < 0):
            raise invalid(path, f"'partial.{k}'", f"is {_show(v)}, not a finite number" +
                          ("" if k == "loss_sum" else " >= 0"))
    if partial.get("correct", 0) > partial.get("seen", 0):
        raise invalid(path, "'partial.correct'", f"({partial['correct']}) exceeds 'partial.seen' "
                      f"({partial.get('seen', 0)})")


def _check_history(history: Any, path: Any) -> None:
    if not isinstance(history, list):
        raise invalid(path, "'history'", f"is {_show(history)}, not a list of epoch records")
    for i, rec in enumerate(history):
        where = f"'history[{i}]'"
        if not isinstance(rec, dict):
            raise invalid(path, where, f"is {_show(rec)}, not a dict")
        if set(rec) != set(_RECORD):
            lacks = [k for k in _RECORD if k not in rec]
            extra = [str(k) for k in rec if k not in _RECORD]
            parts = ([f"missing {', '.join(lacks)}"] if lacks else []) + \
                ([f"unexpected {', '.join(extra)}"] if extra else [])
            raise invalid(path, where, f"does not hold the epoch-record fields ({'; '.join(parts)})")
        if not _is_int(rec["epoch"]) or rec["epoch"] != i:
            raise invalid(path, f"'history[{i}].epoch'", f"is {_show(rec['epoch'])}, expected {i}")
        for k in _RECORD[1:]:
            v = rec[k]
            if not _finite(v):
                raise invalid(path, f"'history[{i}].{k}'", f"is {_show(v)}, not a finite number")
            if k in ("train_acc", "val_acc") and not 0 <= v <= 1:
                raise invalid(path, f"'history[{i}].{k}'", f"is {v}, outside [0, 1]")
            if k in ("time_s", "lr", "val_loss") and v < 0:
                raise invalid(path, f"'history[{i}].{k}'", f"is {v}, negative")


def _check_config(config: Any, path: Any) -> None:
    from .config import TrainConfig

    if not isinstance(config, dict):
        raise invalid(path, "'config'", f"is {_show(config)}, not a dict of TrainConfig fields")
    if config:
        try:
            TrainConfig.from_dict(config)
        except (LayerwiseError, TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise invalid(path, "'config'", f"does not hold a valid TrainConfig ({reason})") from None


def _check_rng(rng: Any, path: Any) -> None:
    if not isinstance(rng, dict):
        raise invalid(path, "'rng'", f"is {_show(rng)}, not a dict of RNG states")
    expected = torch.get_rng_state().numel()
    t = rng.get("torch")
    if "torch" in rng and not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1
                               and t.numel() == expected):
        what = f"a {t.dtype} tensor of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else _show(t)
        raise invalid(path, "'rng.torch'", f"is {what}, not the {expected}-byte uint8 CPU generator state")
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, list) or not all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8
                                             and c.dim() == 1 for c in cuda):
        raise invalid(path, "'rng.cuda'", f"is {_show(cuda)}, not a list of uint8 CUDA generator states")
    if len({c.numel() for c in cuda}) > 1:
        raise invalid(path, "'rng.cuda'", "holds generator states of different sizes")


def _check_run(run: Any, path: Any) -> None:
    if run is None:
        return
    if not isinstance(run, dict) or set(run) != set(RUN_FIELDS):
        raise invalid(path, "'run'", f"is {_show(run)}, not a dict of {', '.join(RUN_FIELDS)}")
    for k in ("model", "architecture", "dataset", "optimizer"):
        if not isinstance(run[k], str):
            raise invalid(path, f"'run.{k}'", f"is {_show(run[k])}, not a string")
    for k in ("num_classes", "train_size", "seed"):
        if not _is_int(run[k]) or run[k] < 0:
            raise invalid(path, f"'run.{k}'", f"is {_show(run[k])}, not an integer >= 0")
    shape = run["input_shape"]
    if not isinstance(shape, (list, tuple)) or not all(_is_int(s) and s > 0 for s in shape):
        raise invalid(path, "'run.input_shape'", f"is {_show(shape)}, not a list of positive integers")


def _check_optimizer_shape(opt: Any, path: Any) -> None:
    """The containers of an optimizer state_dict: {"state": {int: {str: ...}}, "param_groups": [...]}."""
    if not isinstance(opt, dict) or set(opt) != {"state", "param_groups"}:
        raise invalid(path, "'optimizer'", f"is {_show(opt)}, not an optimizer state_dict (state, param_groups)")
    groups = opt["param_groups"]
    if not isinstance(groups, list) or not groups:
        raise invalid(path, "'optimizer.param_groups'", f"is {_show(groups)}, not a non-empty list")
    ids: list[int] = []
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not all(isinstance(k, str) for k in g):
            raise invalid(path, f"'optimizer.param_groups[{i}]'", f"is {_show(g)}, not a dict")
        params = g.get("params")
        if not isinstance(params, list) or not all(_is_int(p) and p >= 0 for p in params):
            raise invalid(path, f"'optimizer.param_groups[{i}].params'", f"is {_show(params)}, not a list of indices")
        ids.extend(params)
    if len(set(ids)) != len(ids):
        raise invalid(path, "'optimizer.param_groups'", "list a parameter index twice")
    state = opt["state"]
    if not isinstance(state, dict):
        raise invalid(path, "'optimizer.state'", f"is {_show(state)}, not a dict")
    known = set(ids)
    for k, v in state.items():
        if not _is_int(k) or k not in known:
            raise invalid(path, f"'optimizer.state' key {_show(k)}", "is not a parameter index of param_groups")
        if not isinstance(v, dict) or not all(isinstance(n, str) for n in v):
            raise invalid(path, f"'optimizer.state[{k}]'", f"is {_show(v)}, not a dict")


def optimizer_kind(opt: dict) -> str | None:
    """'adam' or 'sgd' from the hyper-parameters of an optimizer state_dict (None if neither)."""
    keys = set(opt["param_groups"][0])
    if "betas" in keys and "momentum" not in keys:
        return "adam"
    if "momentum" in keys and "betas" not in keys:
        return "sgd"
    return None


def _same_kind(saved: Any, fresh: Any) -> bool:
    """Whether a saved hyper-parameter has the type of the fresh one (numbers interchangeable)."""
    if isinstance(fresh, bool) or fresh is None:  # flags such as foreach / fused are None or a bool
        return saved is None or isinstance(saved, bool)
    if isinstance(fresh, str):
        return isinstance(saved, str)
    if _is_real(fresh):
        return _finite(saved)
    if isinstance(fresh, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == fresh.shape or _finite(saved)
    if isinstance(fresh, (list, tuple)):
        return isinstance(saved, (list, tuple)) and len(saved) == len(fresh) and \
            all(_same_kind(a, b) for a, b in zip(saved, fresh))
    if isinstance(fresh, dict):
        return isinstance(saved, dict) and all(_is_int(k) and _is_int(v) for k, v in saved.items())
    return True


_GROUP_RANGES = (  # hyper-parameters a valid run can hold (lr is 0 at the end of a cosine schedule)
    ("lr", "a number >= 0", lambda v: _finite(v) and v >= 0),
    ("betas", "two numbers in [0, 1)", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
     and all(_finite(b) and 0 <= b < 1 for b in v)),
    ("eps", "a number > 0", lambda v: _finite(v) and v > 0),
    ("weight_decay", "a number >= 0", lambda v: _finite(v) and v >= 0),
    ("momentum", "a number in [0, 1)", lambda v: _finite(v) and 0 <= v < 1),
    ("dampening", "a number in [0, 1]", lambda v: _finite(v) and 0 <= v <= 1),
    ("initial_lr", "a number >= 0", lambda v: _finite(v) and v >= 0),
)
_SCHED_RANGES = (
    ("T_max", "an integer >= 1", lambda v: _is_int(v) and v >= 1),
    ("eta_min", "a number >= 0", lambda v: _finite(v) and v >= 0),
    ("gamma", "a number in (0, 1]", lambda v: _finite(v) and 0 < v <= 1),
    ("milestones", "epoch numbers with counts >= 1", lambda v: isinstance(v, dict) and all(
        _is_int(e) and _is_int(c) and e >= 0 and c >= 1 for e, c in v.items())),
    ("base_lrs", "a list of numbers >= 0", lambda v: isinstance(v, list) and all(_finite(x) and x >= 0 for x in v)),
    ("_last_lr", "a list of numbers >= 0", lambda v: isinstance(v, list) and all(_finite(x) and x >= 0 for x in v)),
    ("_step_count", "an integer >= 0", lambda v: _is_int(v) and v >= 0),
)


def check_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer, kind: str, path: Any = "checkpoint",
                          fix: str = _FIX) -> None:
    """``saved`` (checked by check_fields) fits ``optimizer`` of ``kind``: groups, hyper-parameters,
    and every state tensor's shape. CheckpointError otherwise; nothing is loaded."""
    fresh = optimizer.state_dict()
    groups = saved["param_groups"]
    if len(groups) != len(fresh["param_groups"]):
        raise invalid(path, "'optimizer.param_groups'", f"has {len(groups)} groups, the model's optimizer "
                      f"{len(fresh['param_groups'])}", fix)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    by_index: dict[int, torch.Tensor] = {}
    for i, (g, f) in enumerate(zip(groups, fresh["param_groups"])):
        if len(g["params"]) != len(f["params"]):
            raise invalid(path, f"'optimizer.param_groups[{i}].params'", f"lists {len(g['params'])} parameters, "
                          f"the model has {len(f['params'])}", fix)
        for k in _OPT_GROUP[kind]:
            if k not in g:
                raise invalid(path, f"'optimizer.param_groups[{i}]'", f"lacks {k!r} of a {kind} optimizer", fix)
        for k, v in g.items():
            if k != "params" and k in f and not _same_kind(v, f[k]):
                raise invalid(path, f"'optimizer.param_groups[{i}].{k}'",
                              f"is {_show(v)}, expected a value like {_show(f[k])}", fix)
        for k, rule, ok in _GROUP_RANGES:
            if k in g and not ok(g[k]):
                raise invalid(path, f"'optimizer.param_groups[{i}].{k}'", f"is {_show(g[k])}, not {rule}", fix)
        for idx, fidx in zip(g["params"], f["params"]):
            by_index[idx] = params[fidx]
    allowed = _OPT_STATE[kind]
    for idx, entry in saved["state"].items():
        param = by_index[idx]
        for name, v in entry.items():
            where = f"'optimizer.state[{idx}].{name}'"
            if name not in allowed:
                raise invalid(path, where, f"is not part of the {kind} optimizer's state", fix)
            if name == "step":
                ok = _finite(v) and v >= 0 or isinstance(v, torch.Tensor) and v.numel() == 1 and \
                    v.is_floating_point() and bool(torch.isfinite(v).all()) and float(v) >= 0
                if not ok:
                    raise invalid(path, where, f"is {_show(v)}, not a step count >= 0", fix)
            elif v is None and name == "momentum_buffer":
                continue
            elif not (isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == param.shape):
                what = f"a {v.dtype} tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else _show(v)
                raise invalid(path, where, f"is {what}, the parameter is {tuple(param.shape)}", fix)
            elif not bool(torch.isfinite(v).all()):
                raise invalid(path, where, "holds NaN or inf", fix)
        if kind == "adam" and not {"step", "exp_avg", "exp_avg_sq"} <= set(entry):
            raise invalid(path, f"'optimizer.state[{idx}]'", "lacks step, exp_avg or exp_avg_sq of Adam", fix)


def scheduler_kind(state: dict) -> str | None:
    for kind, keys in _SCHED_KEYS.items():
        if keys[0] in state:
            return kind
    return None


def check_scheduler_state(saved: dict, scheduler: Any, kind: str, epoch: int, path: Any = "checkpoint") -> None:
    """``saved`` fits ``scheduler`` (of schedule ``kind``) and is at ``epoch``; CheckpointError otherwise."""
    fresh = scheduler.state_dict()
    found = scheduler_kind(saved)
    if found != kind:
        raise invalid(path, "'scheduler'", f"is a {found or 'unknown'} schedule, this run uses {kind!r}",
                      f"resume with --schedule {found}" if found else _FIX)
    for k in ("last_epoch", "base_lrs", *_SCHED_KEYS[kind]):
        if k not in saved:
            raise invalid(path, "'scheduler'", f"lacks {k!r}")
    for k, v in saved.items():
        if k in fresh and not _same_kind(v, fresh[k]):
            raise invalid(path, f"'scheduler.{k}'", f"is {_show(v)}, expected a value like {_show(fresh[k])}")
    for k, rule, ok in _SCHED_RANGES:
        if k in saved and not ok(saved[k]):
            raise invalid(path, f"'scheduler.{k}'", f"is {_show(saved[k])}, not {rule}")
    if len(saved["base_lrs"]) != len(fresh["base_lrs"]):
        raise invalid(path, "'scheduler.base_lrs'", f"has {len(saved['base_lrs'])} entries, the optimizer "
                      f"{len(fresh['base_lrs'])} parameter groups")
    if saved["last_epoch"] != epoch:
        raise invalid(path, "'scheduler.last_epoch'", f"is {saved['last_epoch']}, but 'epoch' is {epoch}")


def dataset_identity(name: str) -> str:
    """A dataset name without the folder of a file-backed set (``cifar10:/a`` -> ``cifar10:DIR``),
    so a moved data folder is still the same dataset."""
    from ..data.registry import DATASETS

    prefix, sep, _ = str(name).partition(":")
    return f"{prefix}:DIR" if sep and f"{prefix}:DIR" in DATASETS else str(name)


def run_identity(model: nn.Module, data: Any, config: Any) -> dict:
    """What makes a checkpoint belong to a run: model class and architecture digest (module types,
    parameter names, shapes and dtypes), dataset (name, sample shape, classes, train size), seed
    and optimizer. Stored as ``"run"`` in every checkpoint ``train`` writes."""
    module = unwrap(model)
    digest = hashlib.sha256()
    for name, mod in module.named_modules():
        if not name:  # the model's own class is the "model" field
            continue
        digest.update(f"{name}:{type(mod).__qualname__};".encode())
    for key, t in module.state_dict().items():
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
    return {"model": type(module).__qualname__, "architecture": digest.hexdigest()[:16],
            "dataset": dataset_identity(data.name), "input_shape": [int(s) for s in data.input_shape],
            "num_classes": int(data.num_classes),
            # a user's iterable loader cannot tell its size: 0 (unknown)
            "train_size": (data.train_size or 0) if hasattr(data, "train_size") else len(data.train),
            "seed": int(config.seed),
            "optimizer": str(config.optimizer)}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(k, str) for k in obj) and \
        any(isinstance(v, torch.Tensor) for v in obj.values())


def _state_dict_of(obj: Any, path: Any) -> dict:
    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("layerwise.checkpoint/"):
        if not _is_state_dict(obj.get("model")):
            raise invalid(path, "'model'", f"is {_show(obj.get('model'))}, not a state_dict")
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
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise invalid(path, "'model'", f"is {_show(state)}, not a state_dict of tensors under string keys")
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    skip_sets = [k for k in own if k.endswith(".attention_skip") and k not in state]
    if skip_sets:   # an ELA checkpoint saved before the skip set was part of the model
        state = {**state, **{k: torch.zeros_like(own[k]) for k in skip_sets}}
        log.warning("%s has no ELA skip set (saved before it was part of the model): loaded with no attention "
                    "layer skipped", path)
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
    obj = _safe_load(path)
    target = unwrap(model)
    state = fit_state_dict(target, _state_dict_of(obj, path), path)
    target.load_state_dict(state, strict=True)
    return model
