"""``mhealth:DIR``: the MHEALTH wearable dataset (Banos et al. 2014), prepared as in LWAC.

Files: ``mHealth_subject1.log`` .. ``mHealth_subject10.log`` in DIR (or DIR/MHEALTHDATASET),
whitespace-separated, 24 columns: 23 signals sampled at 50 Hz (chest acc x3, ECG x2, left-ankle
acc/gyro/mag x3 each, right-lower-arm acc/gyro/mag x3 each) and the activity label (column 24;
0 = null class, dropped; 1..12 -> 0..11).

Preprocessing, in this order:
0. missing samples (NaN, +inf, -inf in a signal column) are counted per file and channel, logged
   as one warning per file and recorded in ``info["non_finite"]``; then, per subject and channel,
   every run of consecutive non-finite samples is replaced by the straight line between the finite
   samples around it (at the start or end of a recording: the nearest finite value), so that the
   filter of step 1 never sees a NaN: ``filtfilt`` would otherwise spread a single NaN over the whole
   recording of that channel. Runs of at most ``MAX_GAP`` = 25 samples (0.5 s) are kept as
   interpolated; a window that overlaps a longer run (a real gap, not a glitch) is dropped in
   step 2, and so is every window of a channel with no finite sample at all. A non-finite label
   (column 24) is a DataError, like any label outside 0..12;
1. per subject and per channel, on the continuous stream: zero-phase 4th-order Butterworth
   low-pass, cut-off 20 Hz (``butter`` + ``filtfilt``; 20 Hz keeps the human-motion band and the
   ECG's QRS energy below the 25 Hz Nyquist limit while removing near-Nyquist noise). The LWAC paper
   says "Butterworth low-pass" without order or cut-off; these two numbers are our choice.
2. sliding windows of 2.56 s = 128 samples with 50 % overlap (step 64), cut inside contiguous runs
   of one label, so a window never spans two activities;
3. per-channel standardisation with the train windows' mean/std.
Shape (23, 128), 12 classes. ``info["channel_groups"]`` names the sensor of each channel.

Split by subject: with all ten subjects, 1-6 train, 7-8 val, 9-10 test. With another set of
subjects (a partial copy), sorted subject ids are split as: test = the last max(1, round(0.2 n)),
val = the max(1, round(0.2 n)) before them, train = the rest (at least 3 subjects needed);
``info["split"]`` says which rule applied.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import register_dataset
from .series import build_series_splits
from .signals import label_runs, lowpass, windows_by_label

FS_HZ = 50.0
CUTOFF_HZ = 20.0
ORDER = 4
WINDOW = 128  # 2.56 s at 50 Hz
STEP = 64  # 50 % overlap
N_COLUMNS = 24
CHANNEL_GROUPS = {"chest_acc": [0, 1, 2], "ecg": [3, 4], "ankle_acc": [5, 6, 7],
                  "ankle_gyro": [8, 9, 10], "ankle_mag": [11, 12, 13], "arm_acc": [14, 15, 16],
                  "arm_gyro": [17, 18, 19], "arm_mag": [20, 21, 22]}
CLASSES = ["standing still", "sitting and relaxing", "lying down", "walking", "climbing stairs",
           "waist bends forward", "frontal elevation of arms", "knees bending (crouching)",
           "cycling", "jogging", "running", "jump front & back"]
FILE_RE = re.compile(r"^mHealth_subject(\d+)\.log$")
MAX_GAP = 25  # samples (0.5 s): longer runs of non-finite samples drop the windows that overlap them
CHANNEL_NAMES = [f"{group}_{axis}" if len(idx) == 3 else f"{group}_{i + 1}"
                 for group, idx in CHANNEL_GROUPS.items() for i, axis in zip(range(len(idx)), "xyz")]
NON_FINITE_RULE = (f"per subject/channel, runs of NaN/inf samples are linearly interpolated between the finite "
                   f"samples around them (nearest value at the ends) before filtering; windows overlapping a run "
                   f"longer than {MAX_GAP} samples ({MAX_GAP / FS_HZ:g} s), or of a channel without any finite "
                   "sample, are dropped")

log = logging.getLogger(__name__)


def subject_split(subjects: list[int]) -> tuple[dict[str, list[int]], str]:
    """Subject ids per split, and the rule that produced them."""
    subjects = sorted(subjects)
    if subjects == list(range(1, 11)):
        return ({"train": list(range(1, 7)), "val": [7, 8], "test": [9, 10]},
                "by subject: 1-6 train, 7-8 val, 9-10 test")
    n = len(subjects)
    if n < 3:
        raise DataError(f"mhealth: found subjects {subjects}; at least 3 subject files are needed for "
                        "a subject-wise train/val/test split (mHealth_subject1.log .. mHealth_subject10.log)")
    k = max(1, round(0.2 * n))
    split = {"train": subjects[:n - 2 * k], "val": subjects[n - 2 * k:n - k], "test": subjects[n - k:]}
    return split, (f"by subject (partial copy of {n} subjects): sorted ids, last {k} test, the {k} before "
                   f"val, rest train: {split}")


def _read_log(path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"file {path} is malformed ({str(exc).splitlines()[0][:120]}): it must hold "
                        f"{N_COLUMNS} whitespace-separated numbers per line; replace it with the official file") from None
    if arr.shape[1] != N_COLUMNS:
        raise DataError(f"file {path} has {arr.shape[1]} columns, expected {N_COLUMNS} (23 signals + "
                        "label): replace it with the official file")
    labels = arr[:, -1]
    if (labels != np.round(labels)).any() or labels.min() < 0 or labels.max() > 12:
        raise DataError(f"file {path} has labels outside 0..12 in column 24: is it an MHEALTH log?")
    return arr


def repair_non_finite(signals: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Non-finite samples of ``signals`` ``(T, C)`` filled by the rule of step 0 (module docstring).

    Returns the filled copy, a ``(T,)`` boolean array that is True inside runs longer than
    ``MAX_GAP`` (and everywhere for a channel without finite samples), and the counts:
    ``{"nan": {channel: n}, "inf": {channel: n}, "interpolated": n, "long_gap_samples": n}``."""
    x = np.array(signals, dtype=np.float64, copy=True)
    bad = ~np.isfinite(x)
    long_gap = np.zeros(x.shape[0], dtype=bool)
    counts = {"nan": {}, "inf": {}, "interpolated": 0, "long_gap_samples": 0}
    if not bad.any():
        return x, long_gap, counts
    t = np.arange(x.shape[0])
    for c in np.flatnonzero(bad.any(axis=0)):
        name = CHANNEL_NAMES[c] if c < len(CHANNEL_NAMES) else str(c)
        n_nan, n_inf = int(np.isnan(x[:, c]).sum()), int(np.isinf(x[:, c]).sum())
        if n_nan:
            counts["nan"][name] = n_nan
        if n_inf:
            counts["inf"][name] = n_inf
        ok = ~bad[:, c]
        if not ok.any():  # nothing to interpolate from: the channel is constant 0 and every window dropped
            x[:, c] = 0.0
            long_gap[:] = True
            continue
        x[~ok, c] = np.interp(t[~ok], t[ok], x[ok, c])  # np.interp holds the end values outside the data
        counts["interpolated"] += int((~ok).sum())
        for start, stop, is_bad in label_runs(~ok):
            if is_bad and stop - start > MAX_GAP:
                long_gap[start:stop] = True
    counts["long_gap_samples"] = int(long_gap.sum())
    return x, long_gap, counts


def subject_windows(arr: np.ndarray, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One subject's log ``(T, 24)`` -> filtered windows ``(N, 23, 128)`` and labels 0..11.

    Non-finite signal samples are handled by :func:`repair_non_finite`; ``stats`` (a dict), when
    given, receives its counts plus ``"dropped_windows"``."""
    signals, long_gap, counts = repair_non_finite(arr[:, :-1])
    stream = lowpass(signals, CUTOFF_HZ, FS_HZ, ORDER)
    # the gap marker travels as one more channel, so each window knows whether it overlaps a long gap
    marked = np.concatenate([stream, long_gap[:, None].astype(stream.dtype)], axis=1)
    x, y = windows_by_label(marked, arr[:, -1].astype(np.int64), WINDOW, STEP, drop=0)
    keep = x[:, -1, :].max(axis=1, initial=0.0) == 0 if len(x) else np.zeros(0, dtype=bool)
    if stats is not None:
        stats.update(counts, dropped_windows=int((~keep).sum()))
    return x[keep, :-1], y[keep] - 1


@register_dataset("mhealth", kind="series", arg="DIR",
                  summary="MHEALTH 23x128 windows, 12 activities, split by subject")
def load_mhealth(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    base = Path(arg).expanduser()
    expected = "mHealth_subject1.log .. mHealth_subject10.log"
    if not base.is_dir():
        raise DataError(f"mhealth: folder {base} does not exist: pass the folder holding {expected}")
    files: dict[int, Path] = {}
    for root in (base, base / "MHEALTHDATASET"):
        if root.is_dir():
            files = {int(m.group(1)): p for p in root.iterdir() if (m := FILE_RE.match(p.name))}
        if files:
            break
    if not files:
        raise DataError(f"mhealth: no subject logs in {base}: expected {expected} "
                        f"(in it or in {base / 'MHEALTHDATASET'})")
    split, rule = subject_split(list(files))
    x, y = {}, {}
    non_finite: dict[str, dict] = {}
    for part, subjects in split.items():
        xs, ys = [], []
        for s in subjects:
            stats: dict = {}
            xw, yw = subject_windows(_read_log(files[s]), stats)
            xs.append(xw)
            ys.append(yw)
            if stats["nan"] or stats["inf"]:
                non_finite[files[s].name] = stats
                log.warning("mhealth: %s has %d NaN and %d inf samples (%s): %d interpolated, %d windows "
                            "dropped for gaps longer than %d samples", files[s].name, sum(stats["nan"].values()),
                            sum(stats["inf"].values()), ", ".join(
                                f"{ch} {stats['nan'].get(ch, 0) + stats['inf'].get(ch, 0)}"
                                for ch in sorted({**stats["nan"], **stats["inf"]})),
                            stats["interpolated"], stats["dropped_windows"], MAX_GAP)
        x[part], y[part] = np.concatenate(xs), np.concatenate(ys)
        if len(x[part]) == 0:
            raise DataError(f"mhealth: subjects {subjects} ({part}) give no {WINDOW}-sample window of "
                            "one activity: the logs are too short or all null class")
    info = {"source": f"MHEALTH subject logs in {files[min(files)].parent}",
            "split": rule, "subjects": split, "channel_groups": CHANNEL_GROUPS,
            "sampling_hz": FS_HZ,
            "non_finite": {"rule": NON_FINITE_RULE, "max_gap_samples": MAX_GAP, "files": non_finite,
                           "nan": sum(sum(v["nan"].values()) for v in non_finite.values()),
                           "inf": sum(sum(v["inf"].values()) for v in non_finite.values()),
                           "dropped_windows": sum(v["dropped_windows"] for v in non_finite.values())},
            "preprocessing": (f"NaN/inf: {NON_FINITE_RULE}; "
                              f"per subject/channel Butterworth low-pass order {ORDER}, cut-off "
                              f"{CUTOFF_HZ:g} Hz, zero-phase (filtfilt), on the continuous stream; "
                              f"null class dropped; windows {WINDOW} samples (2.56 s), step {STEP} "
                              "(50% overlap) within runs of one label; per-channel standardisation "
                              "with train mean/std")}
    return build_series_splits(name, x, y, num_classes=12, classes=CLASSES, info=info)
