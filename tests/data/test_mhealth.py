import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.data import load_dataset
from layerwise.data.mhealth import CUTOFF_HZ, FS_HZ, subject_split, subject_windows
from layerwise.data.signals import label_runs, lowpass, window_count, windows_by_label
from layerwise.errors import DataError


def test_window_count_by_hand():
    stream = np.arange(300.0)[:, None]
    x, y = windows_by_label(stream, np.ones(300, dtype=int), 128, 64)
    assert x.shape == (3, 1, 128) and window_count(300, 128, 64) == 3
    assert x[:, 0, 0].tolist() == [0, 64, 128]


@settings(max_examples=50, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 400)), min_size=1, max_size=6),
       window=st.integers(8, 128), step=st.integers(1, 64))
def test_windows_stay_inside_one_label(runs, window, step):
    labels = np.concatenate([np.full(n, lab) for lab, n in runs])
    stream = np.stack([np.arange(len(labels)), labels], axis=1).astype(float)
    x, y = windows_by_label(stream, labels, window, step, drop=0)
    expected = sum(window_count(e - s, window, step) for s, e, lab in label_runs(labels) if lab != 0)
    assert len(x) == len(y) == expected
    # each window: one label, consecutive samples, label never the null class
    assert all((w[1] == lab).all() and (np.diff(w[0]) == 1).all() for w, lab in zip(x, y))
    assert (y != 0).all()


@given(length=st.integers(0, 5000), window=st.integers(1, 300), step=st.integers(1, 300))
def test_window_count_formula(length, window, step):
    n = window_count(length, window, step)
    assert n == len(range(0, length - window + 1, step))
    if n:
        assert (n - 1) * step + window <= length < n * step + window


def test_lowpass_keeps_1hz_and_attenuates_24hz():
    t = np.arange(0, 20, 1 / FS_HZ)
    slow, fast = np.sin(2 * np.pi * 1 * t), np.sin(2 * np.pi * 24 * t)
    out = lowpass(np.stack([slow, fast], 1), CUTOFF_HZ, FS_HZ)
    mid = slice(100, -100)
    assert np.std(out[mid, 0]) / np.std(slow[mid]) > 0.99
    assert np.std(out[mid, 1]) / np.std(fast[mid]) < 0.3


def write_log(path, labels, rng):
    signals = rng.normal(size=(len(labels), 23))
    np.savetxt(path, np.column_stack([signals, labels]), fmt="%.5f")


def test_subject_windows_count_and_labels():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [3] * 300 + [5] * 200 + [0] * 40)
    arr = np.column_stack([rng.normal(size=(len(labels), 23)), labels])
    x, y = subject_windows(arr)
    assert x.shape == (3 + 2, 23, 128) and y.tolist() == [2, 2, 2, 4, 4]


def test_mhealth_ten_subjects(tmp_path, checked):
    rng = np.random.default_rng(1)
    folder = tmp_path / "MHEALTHDATASET"
    folder.mkdir()
    for s in range(1, 11):
        labels = np.concatenate([[0] * 30, np.full(256, s % 12 + 1), np.full(192, (s + 1) % 12 + 1), [0] * 10])
        write_log(folder / f"mHealth_subject{s}.log", labels, rng)
    (folder / "README.txt").write_text("not a log")
    d = load_dataset(f"mhealth:{tmp_path}")
    assert d.input_shape == (23, 128) and d.num_classes == 12 and len(d.classes) == 12
    assert d.info["subjects"] == {"train": [1, 2, 3, 4, 5, 6], "val": [7, 8], "test": [9, 10]}
    checked(d, sizes={"train": 6 * 5, "val": 2 * 5, "test": 2 * 5})  # 3 + 2 windows per subject
    assert d.info["channel_groups"]["ecg"] == [3, 4] and "20 Hz" in d.info["preprocessing"]
    assert sorted(set(d.test.tensors[1].tolist())) == [9, 10, 11]  # labels 10, 11, 12 -> 9..11


def test_subject_split_fallback():
    split, rule = subject_split([2, 3, 5, 8, 9])
    assert split == {"train": [2, 3, 5], "val": [8], "test": [9]} and "partial" in rule
    with pytest.raises(DataError, match="at least 3"):
        subject_split([1, 2])


def test_mhealth_errors(tmp_path):
    with pytest.raises(DataError, match=r"mHealth_subject1.log \.\. mHealth_subject10.log"):
        load_dataset(f"mhealth:{tmp_path}")
    rng = np.random.default_rng(2)
    for s in (1, 2, 3):
        write_log(tmp_path / f"mHealth_subject{s}.log", np.full(200, 1), rng)
    bad = tmp_path / "mHealth_subject2.log"
    bad.write_text("\n".join(" ".join(line.split()[:20]) for line in bad.read_text().splitlines()))
    with pytest.raises(DataError, match="mHealth_subject2.log has 20 columns"):
        load_dataset(f"mhealth:{tmp_path}")


# ---- non-finite samples (NaN / inf) ----------------------------------------------------------------

def _stream(n=600, label=3, seed=3):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(n, 23)), np.full(n, label)])


def test_one_nan_stays_local():
    """A single NaN used to turn its channel into NaN over the whole recording (filtfilt spreads it)."""
    clean = _stream()
    dirty = clean.copy()
    dirty[300, 0] = np.nan
    stats = {}
    x, y = subject_windows(dirty, stats)
    x_clean, y_clean = subject_windows(clean)
    assert np.isfinite(x).all() and x.shape == x_clean.shape == (8, 23, 128) and (y == y_clean).all()
    assert stats == {"nan": {"chest_acc_x": 1}, "inf": {}, "interpolated": 1, "long_gap_samples": 0,
                     "dropped_windows": 0}
    starts = np.arange(8) * 64
    far = (starts + 128 < 300 - 40) | (starts > 300 + 40)  # the filter's response has died out 40 samples away
    assert far.sum() == 5
    np.testing.assert_allclose(x[far], x_clean[far], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(x[:, 1:], x_clean[:, 1:])  # the other channels are untouched


@pytest.mark.parametrize("gap,dropped", [(1, 0), (25, 0), (26, 3), (150, 5)])  # windows start every 64
def test_long_gaps_drop_the_windows_they_overlap(gap, dropped):
    arr = _stream()
    arr[300:300 + gap, 5] = np.inf if gap == 1 else np.nan
    stats = {}
    x, y = subject_windows(arr, stats)
    assert len(x) == 8 - dropped and np.isfinite(x).all() and stats["dropped_windows"] == dropped
    assert stats["interpolated"] == gap
    assert stats["inf" if gap == 1 else "nan"] == {"ankle_acc_x": gap}
    assert stats["long_gap_samples"] == (gap if gap > 25 else 0)


def test_all_nan_channel_drops_every_window_and_edges_hold_values():
    arr = _stream()
    arr[:, 7] = np.nan
    stats = {}
    x, _ = subject_windows(arr, stats)
    assert len(x) == 0 and stats["dropped_windows"] == 8 and stats["nan"] == {"ankle_acc_z": 600}
    arr = _stream()
    arr[:10, 2] = np.nan  # at the start: the first finite value is held, nothing dropped
    arr[-3:, 2] = -np.inf
    x, _ = subject_windows(arr, stats)
    assert len(x) == 8 and np.isfinite(x).all() and stats["interpolated"] == 13


def test_mhealth_reports_non_finite_counts(tmp_path, caplog, checked):
    rng = np.random.default_rng(1)
    for s in range(1, 11):
        labels = np.concatenate([[0] * 30, np.full(256, s % 12 + 1), np.full(192, (s + 1) % 12 + 1), [0] * 10])
        write_log(tmp_path / f"mHealth_subject{s}.log", labels, rng)
    path = tmp_path / "mHealth_subject1.log"
    lines = path.read_text().splitlines()
    row = lines[100].split()
    row[0], row[4] = "nan", "inf"
    lines[100] = " ".join(row)
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING", logger="layerwise.data.mhealth"):
        d = load_dataset(f"mhealth:{tmp_path}")
    checked(d, sizes={"train": 6 * 5, "val": 2 * 5, "test": 2 * 5})  # no window lost
    x = d.train.tensors[0]
    assert torch_std_min(x) > 0.1  # no window has a channel flattened to a constant
    report = d.info["non_finite"]
    assert report["nan"] == 1 and report["inf"] == 1 and report["dropped_windows"] == 0
    assert report["files"] == {"mHealth_subject1.log": {"nan": {"chest_acc_x": 1}, "inf": {"ecg_2": 1},
                                                        "interpolated": 2, "long_gap_samples": 0,
                                                        "dropped_windows": 0}}
    assert "interpolated" in report["rule"] and "25 samples" in report["rule"]
    warned = [r.getMessage() for r in caplog.records if "mHealth_subject1.log" in r.getMessage()]
    assert len(warned) == 1 and "1 NaN and 1 inf" in warned[0] and "chest_acc_x 1" in warned[0]


def torch_std_min(x):
    """Smallest per-window, per-channel standard deviation of a (N, C, T) tensor."""
    return float(x.std(dim=2).min())
