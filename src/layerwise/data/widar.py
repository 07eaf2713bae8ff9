"""``widar:DIR``: Widar3.0 body-coordinate velocity profiles (BVP), the six-gesture task.

Source: Zhang et al., "Widar3.0: Zero-Effort Cross-Domain Gesture Recognition With Wi-Fi", IEEE
TPAMI 44(11), 2022; used by the UnIT paper (Neth et al., unstructured inference-time pruning on
MCUs) for its domain-shift table (Table 2).

Layout (the official ``BVP.zip``; DIR may be ``BVP`` itself or its parent): one folder per
collection date, ``<yyyymmdd>-VS/6-link/<userN>/*.mat`` (``20181130-VS`` ships without the
``6-link`` level: ``<yyyymmdd>-VS/<userN>/*.mat`` is read too). File names are
``userN-a-b-c-d-<suffix>.mat``: ``a`` gesture id, ``b`` torso location, ``c`` face orientation,
``d`` repetition; the suffix (BVP extraction parameters and link) is ignored. Each file holds one
variable, ``velocity_spectrum_ro``, of shape (20, 20, T): the 20x20 body-velocity grid at 10 Hz.

Labels. The gesture id ``a`` is local to the collection date (and, on three dates, to the user):
``GESTURE_TABLE`` transcribes the README's per-date gesture tables. The task is Widar3.0's six
gestures of the cross-domain benchmark (``GESTURES``: push&pull, sweep, clap, slide, draw-O and
draw-zigzag, both horizontal), the 6 outputs of UnIT's network (Table 1, L: 128 x 6); files of the
other gestures are left out (counted in ``info["left_out"]``). The room of a date comes from the
README's list (``ROOM_OF_DATE``: 1 classroom, 2 hall, 3 office); the file name itself has no room
field, so a date folder not in that list is an error.

Input: per-frame min-max normalisation (as Widar3.0's reference code, ``normalize_data``), then
the time axis becomes the channel axis, zero-padded at the FRONT to ``FRAMES`` = 22 frames as the
reference pads to its T_MAX (UnIT's first conv takes 22 channels: C 32 x 22 x 6 x 6); a longer
sequence keeps its last 22 frames (the choice that keeps the front padding's end alignment).
Shape (22, 20, 20); then per-channel train mean/std. Files with T = 0 (a few in the release)
are left out and counted.

Splits (the paper: 14 users train, 3 test; train / val 90 % / 10 %):

* default: every room; test = the samples of ``TEST_USERS`` = 3 users drawn with the constant
  split seed from the sorted user ids; val = a fixed stratified 10 % of the other users' samples.
* ``--split rooms:A-B`` (A, B in 1..3): train and val from the train users' samples in room A,
  test = the test users' samples in room B (Table 2's four cells: ``rooms:1-1``, ``rooms:1-2``,
  ``rooms:2-1``, ``rooms:2-2``). The test users are drawn (constant seed) among the users recorded
  in room B, so both training rooms are scored on the same people; fewer than 3 when needed to
  leave a train user in room A. ``--split cross-room`` is ``rooms:1-2`` (train in the cluttered
  classroom, test in the nearly empty hall).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import build_image_splits
from .registry import register_dataset
from .splits import SPLIT_SEED, fixed_split

log = logging.getLogger(__name__)

GESTURES = ["Push&Pull", "Sweep", "Clap", "Slide", "Draw-O(H)", "Draw-Zigzag(H)"]
FRAMES = 22        # UnIT Table 1: the first conv takes 22 input channels (time frames)
GRID = 20          # 20 x 20 velocity bins, -2..2 m/s
TEST_USERS = 3     # the paper: 14 users train, 3 test
VAL_FRACTION = 0.1
VARIABLE = "velocity_spectrum_ro"
SPLITS = ("cross-room", "rooms:A-B")

_SIX = ["Push&Pull", "Sweep", "Clap", "Slide", "Draw-O(H)", "Draw-Zigzag(H)"]
_ROOM1_A = ["Push&Pull", "Sweep", "Clap", "Slide", "Draw-Zigzag(V)", "Draw-N(V)"]
_VERTICAL = ["Push&Pull", "Sweep", "Clap", "Draw-O(V)", "Draw-Zigzag(V)", "Draw-N(V)"]
_HORIZONTAL = ["Slide", "Draw-O(H)", "Draw-Zigzag(H)", "Draw-N(H)", "Draw-Triangle(H)", "Draw-Rectangle(H)"]
_NINE = ["Push&Pull", "Sweep", "Clap", "Slide", "Draw-O(H)", "Draw-Zigzag(H)", "Draw-N(H)",
         "Draw-Triangle(H)", "Draw-Rectangle(H)"]


def _ids(names: list[str]) -> dict[int, str]:
    return {i: n for i, n in enumerate(names, start=1)}


# date -> user ("*" = every user) -> gesture id -> gesture name (the README's per-date tables)
GESTURE_TABLE: dict[str, dict[str, dict[int, str]]] = {
    "20181109": {"*": _ids(_ROOM1_A)},
    "20181112": {"*": {**{i: f"Draw-{i}" for i in range(1, 10)}, 0: "Draw-0"}},
    "20181115": {"*": _ids(_VERTICAL)},
    "20181117": {"*": _ids(_VERTICAL)},
    "20181118": {"*": _ids(_VERTICAL)},
    "20181121": {"*": _ids(_HORIZONTAL)},
    "20181127": {"*": _ids(_HORIZONTAL)},
    "20181128": {"*": _ids(["Push&Pull", "Sweep", "Clap", "Draw-O(H)", "Draw-Zigzag(H)", "Draw-N(H)"])},
    "20181130": {"*": _ids(_NINE)},
    "20181204": {"*": _ids(_NINE)},
    "20181205": {"user2": _ids(_HORIZONTAL[1:]), "user3": _ids(_HORIZONTAL)},
    "20181208": {"user2": _ids(["Push&Pull", "Sweep", "Clap", "Slide"]), "user3": _ids(["Push&Pull", "Sweep", "Clap"])},
    "20181209": {"user2": _ids(["Push&Pull"]), "user6": _ids(_SIX)},
    "20181211": {"*": _ids(_SIX)},
}
ROOM_OF_DATE = {
    **dict.fromkeys(("20181109", "20181112", "20181115", "20181121", "20181130"), 1),
    **dict.fromkeys(("20181117", "20181118", "20181127", "20181128", "20181204", "20181205",
                     "20181208", "20181209"), 2),
    "20181211": 3,
}
_NAME = re.compile(r"^(user\d+)-(\d+)-(\d+)-(\d+)-(\d+)(?:-.*)?\.mat$")
_DATE = re.compile(r"^(\d{8})-VS$")


@dataclass(frozen=True)
class BVPFile:
    """One BVP file and the fields of its name (plus the room of its date folder)."""

    path: Path
    date: str
    user: str
    gesture_id: int      # as in the file name: local to the date
    torso: int           # torso location
    face: int            # face orientation
    repetition: int
    room: int
    gesture: str         # resolved name, e.g. "Push&Pull"


def parse_name(path: Path, date: str) -> BVPFile:
    """The fields of ``userN-a-b-c-d-<suffix>.mat`` in the folder of collection ``date``."""
    m = _NAME.match(path.name)
    if m is None:
        raise DataError(f"widar: file name {path.name!r} ({path.parent}) is not a Widar3.0 BVP name: "
                        "expected userN-<gesture>-<torso>-<face>-<repetition>[-...].mat; rename or remove it")
    user, a, b, c, d = m.group(1), *(int(g) for g in m.groups()[1:5])
    table = GESTURE_TABLE[date]
    names = table.get(user, table.get("*"))
    if names is None or a not in names:
        raise DataError(f"widar: {path} has gesture id {a}, which the Widar3.0 README does not list for "
                        f"{user} on {date}-VS: is the file in the right date folder?")
    return BVPFile(path, date, user, a, b, c, d, ROOM_OF_DATE[date], names[a])


def scan(root: Path) -> list[BVPFile]:
    """Every ``.mat`` file under the date folders of ``root``, parsed (sorted by path)."""
    files = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("-VS")):
        m = _DATE.match(folder.name)
        if m is None or m.group(1) not in ROOM_OF_DATE:
            raise DataError(f"widar: folder {folder} is not a Widar3.0 collection date (known: "
                            f"{', '.join(d + '-VS' for d in sorted(ROOM_OF_DATE))}): the room of each "
                            "sample comes from its date folder; rename or remove it")
        files += [parse_name(p, m.group(1)) for p in sorted(folder.rglob("*.mat"))]
    return files


def find_bvp_root(directory: str | Path) -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"widar: folder {directory} does not exist: pass the folder that holds the "
                        "Widar3.0 BVP date folders (<yyyymmdd>-VS/6-link/userN/*.mat), or its parent")
    for root in (directory, directory / "BVP"):
        if root.is_dir() and any(p.is_dir() and p.name.endswith("-VS") for p in root.iterdir()):
            return root
    raise DataError(f"widar: no Widar3.0 BVP date folders in {directory} or {directory / 'BVP'}: expected "
                    "<yyyymmdd>-VS/6-link/userN/userN-a-b-c-d-....mat as unpacked from BVP.zip")


def read_bvp(path: Path) -> np.ndarray:
    """``velocity_spectrum_ro`` of one file as float64 (20, 20, T); one-line DataError if unreadable."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError ... on a damaged file
        raise DataError(f"widar: {path} cannot be read as a MATLAB file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:100] if str(exc) else 'no detail'}): replace it with "
                        "the official file") from None
    if VARIABLE not in mat:
        raise DataError(f"widar: {path} has no variable {VARIABLE!r} (it has "
                        f"{', '.join(k for k in mat if not k.startswith('__')) or 'none'}): is it a BVP file?")
    x = np.asarray(mat[VARIABLE], dtype=np.float64)
    if x.ndim == 2 and x.shape == (GRID, GRID):
        x = x[:, :, None]  # a one-frame profile loses its third axis in MATLAB
    if x.ndim != 3 or x.shape[:2] != (GRID, GRID):
        raise DataError(f"widar: {path}: {VARIABLE} has shape {x.shape}, expected ({GRID}, {GRID}, T): "
                        "replace it with the official file")
    if not np.isfinite(x).all():
        raise DataError(f"widar: {path}: {VARIABLE} holds NaN or infinite values: replace it with the official file")
    return x


def to_input(bvp: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """(20, 20, T) -> (frames, 20, 20): per-frame min-max to [0, 1], zeros in front (see module doc)."""
    x = np.moveaxis(bvp, 2, 0)[-frames:]                       # keep the last `frames` frames
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    x = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)
    out = np.zeros((frames, GRID, GRID), dtype=np.float32)
    out[frames - len(x):] = x
    return out


def parse_split(split: str | None) -> tuple[int, int] | None:
    """``None`` (every room), ``cross-room`` -> (1, 2), ``rooms:A-B`` -> (A, B)."""
    if split is None:
        return None
    if split == "cross-room":
        return (1, 2)
    m = re.fullmatch(r"rooms:([123])-([123])", split)
    if m is None:
        raise DataError(f"widar: unknown split {split!r}: use cross-room (train room 1, test room 2) or "
                        "rooms:A-B with rooms 1-3, e.g. rooms:2-1; leave it unset for the all-rooms split")
    return int(m.group(1)), int(m.group(2))


def pick_test_users(candidates: list[str], train_pool: set[str], k: int = TEST_USERS) -> list[str]:
    """A fixed draw (constant seed) of up to ``k`` of ``candidates`` leaving a user in ``train_pool``."""
    order = [candidates[i] for i in np.random.RandomState(SPLIT_SEED).permutation(len(candidates))]
    for n in range(min(k, len(candidates)), 0, -1):
        if train_pool - set(order[:n]):
            return sorted(order[:n], key=_user_key)
    return []


def _user_key(user: str) -> int:
    return int(user[4:])


@register_dataset("widar", kind="image", arg="DIR", splits=SPLITS,
                  summary="Widar3.0 BVP 22x20x20, 6 gestures, user-disjoint test; --split cross-room")
def load_widar(name: str, arg: str, *, size=None, channels=None, seed: int = 0, split: str | None = None):
    rooms = parse_split(split)
    root = find_bvp_root(arg)
    files = scan(root)
    if not files:
        raise DataError(f"widar: no .mat files under the date folders of {root}: expected "
                        "<yyyymmdd>-VS/6-link/userN/userN-a-b-c-d-....mat")
    kept = [f for f in files if f.gesture in GESTURES]
    if rooms is not None:
        kept = [f for f in kept if f.room in rooms]
    left_out = {"other gestures": sum(f.gesture not in GESTURES for f in files)}

    x, meta = [], []
    empty = 0
    for f in kept:
        bvp = read_bvp(f.path)
        if bvp.shape[2] == 0:
            empty += 1
            continue
        x.append(to_input(bvp))
        meta.append(f)
    left_out["empty (T = 0)"] = empty
    if not meta:
        where = f" in rooms {sorted(set(rooms))}" if rooms else ""
        raise DataError(f"widar: no readable samples of the six gestures ({', '.join(GESTURES)}){where} "
                        f"under {root}")
    labels = np.array([GESTURES.index(f.gesture) for f in meta], dtype=np.int64)
    users = np.array([f.user for f in meta])
    room = np.array([f.room for f in meta])

    train_room, test_room = rooms if rooms is not None else (None, None)
    in_train_room = np.ones(len(meta), bool) if rooms is None else room == train_room
    in_test_room = np.ones(len(meta), bool) if rooms is None else room == test_room
    candidates = sorted(set(users[in_test_room]), key=_user_key)
    test_users = pick_test_users(candidates, set(users[in_train_room]))
    if not test_users:
        raise DataError(f"widar: cannot hold out test users{' for ' + split if split else ''}: the data has "
                        f"users {', '.join(sorted(set(users), key=_user_key))} and at least one must train "
                        f"{'in room ' + str(train_room) if rooms else ''} and another test"
                        f"{' in room ' + str(test_room) if rooms else ''}")
    is_test_user = np.isin(users, test_users)
    test_idx = np.flatnonzero(is_test_user & in_test_room)
    pool = np.flatnonzero(~is_test_user & in_train_room)
    keep, val, strat = fixed_split(labels[pool], VAL_FRACTION)
    indices = {"train": pool[keep], "val": pool[val], "test": test_idx}

    raw = torch.from_numpy(np.stack(x))
    where = ("every room" if rooms is None else
             f"train room {train_room} -> test room {test_room}"
             f"{' (cross-room)' if train_room != test_room else ' (same room)'}")
    info = {"source": f"Widar3.0 BVP folder {root}",
            "split": f"{where}; test = users {', '.join(test_users)} (fixed draw, seed {SPLIT_SEED}); "
                     f"val = fixed {'stratified ' if strat else ''}10% of the other users' samples",
            "protocol": split or "all-rooms", "test_users": test_users,
            "train_users": sorted(set(users[pool]), key=_user_key),
            "rooms": {"train": train_room, "test": test_room} if rooms else "all",
            "left_out": left_out,
            "input": f"per-frame min-max, time as channels, zero-padded in front to {FRAMES} frames"}
    return build_image_splits(name, raw, labels, indices, num_classes=len(GESTURES), classes=list(GESTURES),
                              info=info, scale=1.0, size=size, channels=channels)
