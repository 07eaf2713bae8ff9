import numpy as np
import pytest

from layerwise.data import load_dataset
from layerwise.data.uci_har import CHANNELS, val_subjects
from layerwise.errors import DataError


def write_har(root, train_subjects=(1, 3, 5, 6, 7), test_subjects=(2, 4), per_subject=12):
    rng = np.random.default_rng(0)
    r = root / "UCI HAR Dataset"
    for split, subjects in (("train", train_subjects), ("test", test_subjects)):
        (r / split / "Inertial Signals").mkdir(parents=True)
        subj = np.repeat(subjects, per_subject)
        y = (np.arange(len(subj)) % 6) + 1
        np.savetxt(r / split / f"y_{split}.txt", y, fmt="%d")
        np.savetxt(r / split / f"subject_{split}.txt", subj, fmt="%d")
        for c in CHANNELS:
            np.savetxt(r / split / "Inertial Signals" / f"{c}_{split}.txt",
                       rng.normal(size=(len(subj), 128)), fmt="%.7e")
    (r / "activity_labels.txt").write_text("1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n"
                                           "4 SITTING\n5 STANDING\n6 LAYING\n")
    return r


def test_uci_har_subject_wise_split(tmp_path, checked):
    r = write_har(tmp_path)
    d = load_dataset(f"uci-har:{tmp_path}")
    assert d.input_shape == (9, 128) and d.num_classes == 6 and d.classes[5] == "LAYING"
    held = d.info["val_subjects"]
    assert held == val_subjects(np.array([1, 3, 5, 6, 7])) and len(held) == 1  # round(0.2 * 5)
    checked(d, sizes={"train": 48, "val": 12, "test": 24})
    # val holds exactly the rows of the held-out subject, in file order
    subj = np.loadtxt(r / "train" / "subject_train.txt").astype(int)
    y = np.loadtxt(r / "train" / "y_train.txt").astype(int) - 1
    assert d.val.tensors[1].tolist() == y[np.isin(subj, held)].tolist()
    assert d.info["channel_groups"] == {"body_acc": [0, 1, 2], "body_gyro": [3, 4, 5], "total_acc": [6, 7, 8]}


def test_val_subjects_fixed_and_about_a_fifth():
    subjects = np.arange(1, 22)
    a = val_subjects(subjects)
    assert a == val_subjects(subjects[::-1]) and len(a) == 4


def test_uci_har_errors(tmp_path):
    r = write_har(tmp_path)
    f = r / "test" / "Inertial Signals" / "body_gyro_y_test.txt"
    f.write_text("\n".join(f.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match="body_gyro_y_test.txt has 23 rows"):
        load_dataset(f"uci-har:{r}")
    f.unlink()
    with pytest.raises(DataError, match="missing test/Inertial Signals/body_gyro_y_test.txt"):
        load_dataset(f"uci-har:{tmp_path}")
    with pytest.raises(DataError, match=r"no dataset files in .*train: expected .*y_<split>.txt"):
        load_dataset(f"uci-har:{tmp_path / 'UCI HAR Dataset' / 'train'}")
