"""``mhealth:DIR``: the MHEALTH wearable dataset (Banos et al. 2014), prepared as in LWAC.

Files: ``mHealth_subject1.log`` .. ``mHealth_subject10.log`` in DIR (or DIR/MHEALTHDATASET),
whitespace-separated, 24 columns: 23 signals sampled at 50 Hz (chest acc x3, ECG x2, left-ankle
acc/gyro/mag x3 each, right-lower-arm acc/gyro/mag x3 each) and the activity label (column 24;
0 = null class, dropped; 1..12 -> 0..11).

Preprocessing, in this order:
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

import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import register_dataset
from .series import build_series_splits
from .signals import lowpass, windows_by_label

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


def subject_windows(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One subject's log ``(T, 24)`` -> filtered windows ``(N, 23, 128)`` and labels 0..11."""
    stream = lowpass(arr[:, :-1], CUTOFF_HZ, FS_HZ, ORDER)
    x, y = windows_by_label(stream, arr[:, -1].astype(np.int64), WINDOW, STEP, drop=0)
    return x, y - 1


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
    for part, subjects in split.items():
        xs, ys = zip(*(subject_windows(_read_log(files[s])) for s in subjects))
        x[part], y[part] = np.concatenate(xs), np.concatenate(ys)
        if len(x[part]) == 0:
            raise DataError(f"mhealth: subjects {subjects} ({part}) give no {WINDOW}-sample window of "
                            "one activity: the logs are too short or all null class")
    info = {"source": f"MHEALTH subject logs in {files[min(files)].parent}",
            "split": rule, "subjects": split, "channel_groups": CHANNEL_GROUPS,
            "sampling_hz": FS_HZ,
            "preprocessing": (f"per subject/channel Butterworth low-pass order {ORDER}, cut-off "
                              f"{CUTOFF_HZ:g} Hz, zero-phase (filtfilt), on the continuous stream; "
                              f"null class dropped; windows {WINDOW} samples (2.56 s), step {STEP} "
                              "(50% overlap) within runs of one label; per-channel standardisation "
                              "with train mean/std")}
    return build_series_splits(name, x, y, num_classes=12, classes=CLASSES, info=info)
