"""Multichannel time-series datasets held as float32 tensors.

Standardisation: each channel is centred and scaled with the mean and standard deviation of the
TRAIN split (over all train samples and time steps), and the same statistics are applied to val
and test. For variable-length sets (see :func:`pad_or_cut`) the statistics are taken over the
real values only, and padding is added after standardising, so padded steps equal the channel
mean (zero).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .base import DatasetSplits


def channel_stats(series: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over samples and time; NaN (missing values) are ignored."""
    if isinstance(series, np.ndarray) and series.ndim == 3:
        flat = np.moveaxis(series, 1, 0).reshape(series.shape[1], -1)
    else:
        flat = np.concatenate([np.asarray(s, dtype=np.float64) for s in series], axis=1)
    mean = np.nanmean(flat, axis=1)
    std = np.nanstd(flat, axis=1)
    std = np.where(std > 1e-8, std, 1.0)  # a constant channel stays constant (zero) instead of NaN
    return mean, std


def pad_or_cut(series: list[np.ndarray], length: int) -> np.ndarray:
    """List of ``(C, T_i)`` arrays -> ``(N, C, length)``: zeros appended at the end of shorter
    series, longer ones cut at ``length``."""
    n_ch = series[0].shape[0]
    out = np.zeros((len(series), n_ch, length), dtype=np.float32)
    for i, s in enumerate(series):
        t = min(length, s.shape[1])
        out[i, :, :t] = s[:, :t]
    return out


def build_series_splits(name: str, x: dict[str, np.ndarray], y: dict[str, np.ndarray], *,
                        num_classes: int, classes: list[str] | None, info: dict,
                        standardise: bool = True) -> DatasetSplits:
    """``x[split]`` is ``(N, C, T)`` (already padded), ``y[split]`` int labels, for
    ``split`` in train/val/test. Standardises with train statistics unless ``standardise`` is
    False (the caller did it already, e.g. before padding) and wraps as TensorDatasets."""
    info = dict(info)
    if standardise:
        mean, std = channel_stats(x["train"])
        x = {k: (v - mean[None, :, None]) / std[None, :, None] for k, v in x.items()}
        info["normalisation"] = {"mean": [round(float(v), 6) for v in mean],
                                 "std": [round(float(v), 6) for v in std]}
    missing = any(np.isnan(v).any() for v in x.values())
    if missing:
        x = {k: np.nan_to_num(v, nan=0.0) for k, v in x.items()}
        info["missing_values"] = "NaN replaced by 0 (the channel mean) after standardising"
    ds = {k: TensorDataset(torch.as_tensor(np.ascontiguousarray(x[k]), dtype=torch.float32),
                           torch.as_tensor(np.asarray(y[k]), dtype=torch.long))
          for k in ("train", "val", "test")}
    info["sizes"] = {k: len(v) for k, v in ds.items()}
    return DatasetSplits(name=name, train=ds["train"], val=ds["val"], test=ds["test"],
                         input_shape=tuple(int(s) for s in x["train"].shape[1:]),
                         num_classes=num_classes, kind="series", classes=classes, info=info)


def label_indices(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map labels to class indices in sorted order; numeric labels sort as numbers
    ("2" before "10"), others as strings. Returns (indices, class names)."""
    uniq = sorted({str(v) for v in labels}, key=_label_key)
    lookup = {c: i for i, c in enumerate(uniq)}
    return np.array([lookup[str(v)] for v in labels], dtype=np.int64), uniq


def _label_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
