"""Filtering and windowing of continuous sensor streams.

- :func:`lowpass`: zero-phase Butterworth low-pass (``scipy.signal.butter`` + ``filtfilt``),
  applied along time to each channel of one continuous recording.
- :func:`window_starts`: sliding windows of ``window`` samples every ``step`` samples; a stream
  of length L gives ``floor((L - window) / step) + 1`` windows (none when L < window).
- :func:`windows_by_label`: windows cut inside contiguous runs of one label, so that a window
  never spans two activities; runs of the null label are dropped.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def lowpass(x: np.ndarray, cutoff_hz: float, fs_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass of ``x`` (time along axis 0)."""
    from scipy.signal import butter, filtfilt

    b, a = butter(order, cutoff_hz, btype="low", fs=fs_hz)
    padlen = 3 * max(len(a), len(b))  # filtfilt's default edge padding
    if x.shape[0] <= padlen:
        raise DataError(f"a stream of {x.shape[0]} samples is too short to filter (needs more than "
                        f"{padlen}): the recording is truncated")
    return filtfilt(b, a, x, axis=0)


def window_count(length: int, window: int, step: int) -> int:
    """Number of full windows in a stream of ``length`` samples."""
    return 0 if length < window else (length - window) // step + 1


def window_starts(length: int, window: int, step: int) -> np.ndarray:
    return np.arange(0, length - window + 1, step) if length >= window else np.zeros(0, dtype=np.int64)


def label_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of one label as ``(start, stop, label)``."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, stops)]


def windows_by_label(stream: np.ndarray, labels: np.ndarray, window: int, step: int,
                     drop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``stream`` ``(T, C)`` into windows ``(N, C, window)`` within runs of one label.

    Returns the windows and the label of each; runs labelled ``drop`` are skipped."""
    xs, ys = [], []
    for start, stop, lab in label_runs(labels):
        if lab == drop:
            continue
        for s in window_starts(stop - start, window, step):
            xs.append(stream[start + s:start + s + window].T)
            ys.append(lab)
    if not xs:
        return np.zeros((0, stream.shape[1], window), dtype=stream.dtype), np.zeros(0, dtype=np.int64)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)
