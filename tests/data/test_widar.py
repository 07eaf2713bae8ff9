"""widar:DIR on small BVP .mat files written in the official Widar3.0 layout (scipy.io.savemat)."""

import math

import numpy as np
import pytest
from scipy.io import savemat

from layerwise.cli import main
from layerwise.data import load_dataset
from layerwise.data.widar import FRAMES, GESTURES, parse_name, to_input
from layerwise.errors import DataError
from layerwise.results import read_results

# Room 1 = 20181130 (ids 1..9: the six gestures are ids 1..6), room 2 = 20181204 (same table).
DATES = {1: "20181130", 2: "20181204"}
USERS = [f"user{i}" for i in range(1, 7)]
SUFFIX = "1-1e-07-100-20-100000-L0"  # the extraction parameters and link of the official names


def write_widar(root, users=USERS, reps=2, rooms=(1, 2)):
    """Fixture: every user does gestures 1..6 `reps` times in each room; plus one gesture-7 file
    (Draw-N, not one of the six) per room. Returns {path name: (room, user, label)}."""
    rng = np.random.default_rng(0)
    meta = {}
    for room in rooms:
        date = DATES[room]
        for user in users:
            # 20181130-VS ships without the 6-link level; the other dates have it
            folder = root / "BVP" / f"{date}-VS" / ("" if date == "20181130" else "6-link") / user
            folder.mkdir(parents=True, exist_ok=True)
            for g in range(1, 8 if user == users[0] else 7):
                for r in range(1, reps + 1):
                    t = int(rng.integers(5, 30))
                    bvp = rng.random((20, 20, t)) * (0.5 + 0.2 * room)  # the room changes the clutter
                    bvp[3 * g - 2:3 * g + 1, 3 * g - 2:3 * g + 1] += 1.0  # the gesture's velocity bins
                    name = f"{user}-{g}-{1 + r % 5}-{1 + g % 5}-{r}-{SUFFIX}.mat"
                    savemat(folder / name, {"velocity_spectrum_ro": bvp})
                    if g <= 6:
                        meta[f"{date}/{name}"] = (room, user, g - 1)
    return meta


def test_file_name_fields_and_room():
    from pathlib import Path
    f = parse_name(Path("user12-5-3-4-17-1-1e-07-100-20-100000-L0.mat"), "20181128")
    assert (f.user, f.gesture_id, f.torso, f.face, f.repetition, f.room) == ("user12", 5, 3, 4, 17, 2)
    assert f.gesture == "Draw-Zigzag(H)"  # id 5 on 2018-11-28 (hall); on 2018-11-09 it is Draw-Zigzag(V)
    assert parse_name(Path("user1-5-1-1-1.mat"), "20181109").gesture == "Draw-Zigzag(V)"


def test_to_input_normalises_each_frame_and_pads_in_front():
    bvp = np.zeros((20, 20, 2))
    bvp[0, 0, 0], bvp[1, 1, 0] = 2.0, 6.0       # frame 0: min 0, max 6
    bvp[:, :, 1] = 3.0                          # frame 1: constant -> all zeros
    x = to_input(bvp)
    assert x.shape == (FRAMES, 20, 20) and x.dtype == np.float32
    assert not x[:FRAMES - 2].any()             # 20 zero frames in front
    assert x[FRAMES - 2, 0, 0] == pytest.approx(2 / 6) and x[FRAMES - 2, 1, 1] == 1.0
    assert not x[FRAMES - 1].any()
    long = np.stack([np.full((20, 20), float(t)) for t in range(30)], axis=2)
    long[0, 0, :] = -1.0                        # every frame min -1, max t
    y = to_input(long)
    assert y[0, 1, 1] == 1.0 and y[0, 0, 0] == 0.0 and y[-1, 0, 0] == 0.0  # last 22 frames kept


def test_default_split_is_user_disjoint(tmp_path, checked):
    meta = write_widar(tmp_path)
    d = load_dataset(f"widar:{tmp_path}")
    assert d.input_shape == (FRAMES, 20, 20) and d.num_classes == 6 and d.classes == GESTURES
    test_users = d.info["test_users"]
    assert len(test_users) == 3 and not set(test_users) & set(d.info["train_users"])
    n_test = sum(u in test_users for _, u, _ in meta.values())
    n_pool = len(meta) - n_test
    n_val = math.ceil(0.1 * n_pool)
    checked(d, sizes={"train": n_pool - n_val, "val": n_val, "test": n_test}, atol=1e-3)
    assert d.info["left_out"]["other gestures"] == 4   # user1's gesture-7 files: 2 reps x 2 rooms


def test_cross_room_trains_in_room_1_and_tests_room_2_users(tmp_path):
    meta = write_widar(tmp_path)
    d = load_dataset(f"widar:{tmp_path / 'BVP'}", split="cross-room")
    test_users = d.info["test_users"]
    assert d.info["rooms"] == {"train": 1, "test": 2} and len(test_users) == 3
    expect_test = sorted(lab for room, u, lab in meta.values() if room == 2 and u in test_users)
    expect_pool = sorted(lab for room, u, lab in meta.values() if room == 1 and u not in test_users)
    got_test = sorted(d.test.labels[d.test.indices].tolist())
    got_pool = sorted(d.train.labels[d.train.indices].tolist() + d.val.labels[d.val.indices].tolist())
    assert got_test == expect_test and got_pool == expect_pool
    # the same test users score both training rooms (Table 2's columns): rooms:2-2 holds them too
    same = load_dataset(f"widar:{tmp_path}", split="rooms:2-2")
    assert same.info["test_users"] == test_users and len(same.test) == len(d.test)
    back = load_dataset(f"widar:{tmp_path}", split="rooms:2-1")
    assert back.info["rooms"] == {"train": 2, "test": 1}


def test_bad_files_and_splits_are_one_line_errors(tmp_path):
    write_widar(tmp_path, users=USERS[:4], reps=1)
    folder = tmp_path / "BVP" / "20181130-VS" / "user1"
    with pytest.raises(DataError, match="unknown split 'room-swap'"):
        load_dataset(f"widar:{tmp_path}", split="room-swap")
    with pytest.raises(DataError, match="takes no split"):
        load_dataset("digits", split="cross-room")

    bad = folder / f"user1-1-1-1-9-{SUFFIX}.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match=r"user1-1-1-1-9-.*cannot be read as a MATLAB file") as e:
        load_dataset(f"widar:{tmp_path}")
    assert "\n" not in str(e.value)
    savemat(bad, {"other": np.zeros(3)})
    with pytest.raises(DataError, match="has no variable 'velocity_spectrum_ro'"):
        load_dataset(f"widar:{tmp_path}")
    savemat(bad, {"velocity_spectrum_ro": np.zeros((10, 20, 4))})
    with pytest.raises(DataError, match=r"shape \(10, 20, 4\), expected \(20, 20, T\)"):
        load_dataset(f"widar:{tmp_path}")
    bad.unlink()

    (folder / "gesture.mat").write_bytes(b"")
    with pytest.raises(DataError, match="not a Widar3.0 BVP name"):
        load_dataset(f"widar:{tmp_path}")
    (folder / "gesture.mat").unlink()
    (tmp_path / "BVP" / "20190101-VS").mkdir()
    with pytest.raises(DataError, match="20190101-VS is not a Widar3.0 collection date"):
        load_dataset(f"widar:{tmp_path}")
    with pytest.raises(DataError, match="no Widar3.0 BVP date folders"):
        load_dataset(f"widar:{tmp_path / 'BVP' / '20181130-VS'}")


@pytest.mark.slow
def test_unit_runs_cross_room_end_to_end(tmp_path, capsys):
    """`layerwise unit --split cross-room` on the fixture: smoke options keep it to ~30 s of CPU."""
    write_widar(tmp_path / "data", reps=3)
    out = tmp_path / "run"
    rc = main(["unit", "--model", "widar-lenet", "--dataset", f"widar:{tmp_path / 'data'}", "--split", "cross-room",
               "--quick", "--epochs", "4", "--no-shift", "--val-limit", "8", "--test-limit", "8", "--sweep", "20", "--threads", "1",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "widar-lenet / widar:" in text and "@cross-room[22x20x20]" in text and "scored on test (8)" in text
    doc = read_results(out)
    assert doc["dataset"].startswith("widar:") and doc["dataset"].endswith("@cross-room[22x20x20]")
    assert {v["name"] for v in doc["variants"]} >= {"dense", "unit", "magnitude"}
