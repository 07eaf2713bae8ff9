"""``speech-commands:DIR``: Google Speech Commands v0.02, the 12-class keyword-spotting task.

Source: Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition",
arXiv 1804.03209; the UnIT paper's KWS set (Figs. 5-7, network in Table 1).

Layout (the official archive unpacked; DIR may hold it in ``speech_commands_v0.02/``): one folder
per word of 1-s, 16 kHz, 16-bit mono WAVs (``<word>/<speaker>_nohash_<n>.wav``),
``_background_noise_/*.wav`` (minutes-long noise recordings), ``validation_list.txt`` and
``testing_list.txt`` (one ``<word>/<file>.wav`` per line).

Classes (the standard 12, as TensorFlow's ``speech_commands`` recipe): ``_silence_``,
``_unknown_``, then ``yes no up down left right on off stop go``. Every other word folder is
``_unknown_``.

Splits: test = the files of ``testing_list.txt``, val = those of ``validation_list.txt``, train =
the rest (the official lists keep each speaker in one split). In each split, as the TensorFlow
recipe: all clips of the ten words; ``_unknown_`` clips drawn (constant seed) to 10 % of the ten
words' count; ``_silence_`` clips, also 10 % of that count, each a 1-s window of one background
noise file scaled by a volume drawn from U(0, 1). Unlike the recipe, which cuts every split's
windows from anywhere in the same six files, each noise file is cut in time: its first 80 % feeds
train, the next 10 % val and the last 10 % test, so no noise sample is in two splits. No training
noise is mixed into word clips (features are cached; augmentation is left to training).

Features (``MFCC``, computed with librosa, then cached, see :mod:`layerwise.data.cache`): each clip
zero-padded or cut to 16,000 samples; Hann window of 30 ms (480 samples, FFT 512), hop 8 ms (128
samples), centred frames -> 126 frames; 80 mel bands over 20-8,000 Hz, power spectrum in dB
(``power_to_db``: 10 log10 with ref 1.0, floor 1e-10, and values more than 80 dB below the clip's
maximum raised to that level), DCT-II (orthonormal) keeping all 80 coefficients. Input shape
(1, 126, 80) (time x coefficient), the size that gives the paper's KWS network (Table 1) its
FC(7616, 12): 16 x 28 x 17 after two conv5 + pool2 stages. The paper states no MFCC settings; these
are our choice for that shape. Then per-channel train mean/std.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .cache import ArrayCache, source_fingerprint
from .images import build_image_splits
from .registry import register_dataset
from .splits import SPLIT_SEED

log = logging.getLogger(__name__)

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "_silence_", "_unknown_"
CLASSES = [SILENCE, UNKNOWN, *WORDS]
NOISE_DIR = "_background_noise_"
SAMPLE_RATE = 16_000
CLIP = SAMPLE_RATE            # 1 s
SILENCE_PERCENT = 10.0        # of the ten words' clips, per split (TensorFlow recipe)
UNKNOWN_PERCENT = 10.0
NOISE_SHARES = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
MFCC = {"sr": SAMPLE_RATE, "n_mfcc": 80, "n_fft": 512, "win_length": 480, "hop_length": 128,
        "n_mels": 80, "fmin": 20.0, "fmax": 8000.0, "center": True, "window": "hann",
        "top_db": 80.0, "dct_type": 2, "norm": "ortho"}


def read_wav(path: Path) -> np.ndarray:
    """A mono 16 kHz WAV as float32 in [-1, 1]; one-line DataError otherwise."""
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except Exception as exc:  # scipy raises ValueError or OSError on a damaged file
        detail = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise DataError(f"speech-commands: {path} cannot be read as a WAV file ({detail}): replace it "
                        "with the official file") from None
    if rate != SAMPLE_RATE:
        raise DataError(f"speech-commands: {path} is sampled at {rate} Hz, expected {SAMPLE_RATE}: "
                        "resample it to 16 kHz (the official clips are 16 kHz)")
    if data.ndim != 1:
        raise DataError(f"speech-commands: {path} has {data.shape[1]} channels, expected 1 (mono)")
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float32)


def fit_clip(y: np.ndarray) -> np.ndarray:
    """Zero-padded at the end or cut to exactly one second."""
    out = np.zeros(CLIP, dtype=np.float32)
    out[:min(CLIP, len(y))] = y[:CLIP]
    return out


def mfcc(y: np.ndarray) -> np.ndarray:
    """(1, 126, 80) float32 MFCCs of a one-second clip (settings in ``MFCC``)."""
    import librosa

    p = MFCC
    mel = librosa.feature.melspectrogram(y=fit_clip(y), sr=p["sr"], n_fft=p["n_fft"], win_length=p["win_length"],
                                         hop_length=p["hop_length"], window=p["window"], center=p["center"],
                                         n_mels=p["n_mels"], fmin=p["fmin"], fmax=p["fmax"], power=2.0)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=p["top_db"])  # 10 log10, floor max - 80 dB
    coeffs = librosa.feature.mfcc(S=log_mel, n_mfcc=p["n_mfcc"],
                                  dct_type=p["dct_type"], norm=p["norm"])
    return coeffs.T[None].astype(np.float32)


def _import_librosa() -> None:
    try:
        import librosa  # noqa: F401
    except ImportError:
        raise DataError("speech-commands needs librosa for its MFCC features: pip install "
                        "'layerwise[audio]' (or pip install librosa==0.11.0)") from None


def _read_list(path: Path, root: Path) -> set[str]:
    names = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if "/" not in line or not line.endswith(".wav"):
            raise DataError(f"speech-commands: {path.name} line {n} is {line[:60]!r}, expected "
                            "'<word>/<file>.wav'; replace it with the official list")
        if not (root / line).is_file():
            raise DataError(f"speech-commands: {path.name} line {n} names {line}, which is not in {root}: "
                            "the list and the word folders come from different releases")
        names.add(line)
    return names


def find_root(directory: str | Path) -> Path:
    directory = Path(directory).expanduser()
    need = "validation_list.txt, testing_list.txt, _background_noise_/ and one folder of WAVs per word"
    if not directory.is_dir():
        raise DataError(f"speech-commands: folder {directory} does not exist: pass the folder that holds {need}")
    for root in (directory, directory / "speech_commands_v0.02"):
        if (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file():
            missing = [m for m in ("validation_list.txt", "testing_list.txt", NOISE_DIR) if not (root / m).exists()]
            if missing:
                raise DataError(f"speech-commands: folder {root} is incomplete: missing {', '.join(missing)}; "
                                f"it needs {need}")
            return root
    raise DataError(f"speech-commands: no Speech Commands files in {directory}: expected {need}")


def _index(root: Path) -> tuple[dict[str, list[tuple[str, int]]], list[Path]]:
    """Clips per split as (relative path, class index) and the background-noise files."""
    val, test = _read_list(root / "validation_list.txt", root), _read_list(root / "testing_list.txt", root)
    rng = np.random.RandomState(SPLIT_SEED)
    words: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    unknown: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    for folder in folders:
        for wav in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{wav.name}"
            split = "test" if rel in test else "val" if rel in val else "train"
            if folder.name in WORDS:
                words[split].append((rel, CLASSES.index(folder.name)))
            else:
                unknown[split].append((rel, CLASSES.index(UNKNOWN)))
    out = {}
    for split in words:
        n_unknown = math.ceil(len(words[split]) * UNKNOWN_PERCENT / 100)
        pool = unknown[split]
        picked = [pool[i] for i in sorted(rng.permutation(len(pool))[:n_unknown])]
        out[split] = words[split] + picked
    noise = sorted((root / NOISE_DIR).glob("*.wav"))
    if not noise:
        raise DataError(f"speech-commands: {root / NOISE_DIR} holds no WAV files: the {SILENCE} class is cut "
                        "from them; copy the official background-noise recordings there")
    if not any(words.values()):
        raise DataError(f"speech-commands: no WAVs of the ten words ({', '.join(WORDS)}) under {root}: "
                        "expected <word>/<file>.wav")
    return out, noise


def silence_clips(noise: dict[Path, np.ndarray], split: str, count: int, rng: np.random.RandomState
                  ) -> list[np.ndarray]:
    """``count`` one-second windows of the ``split`` share of the noise files, volume U(0, 1)."""
    lo_share, hi_share = NOISE_SHARES[split]
    usable = []
    for path, y in noise.items():
        lo, hi = int(lo_share * len(y)), int(hi_share * len(y))
        if hi - lo >= CLIP:
            usable.append((y, lo, hi))
    if count and not usable:
        raise DataError(f"speech-commands: no background-noise file has 1 s in its {split} share "
                        f"({lo_share:.0%}-{hi_share:.0%} of its length): the official recordings are over a "
                        "minute long; the files must be at least 10 s")
    clips = []
    for _ in range(count):
        y, lo, hi = usable[rng.randint(len(usable))]
        start = rng.randint(lo, hi - CLIP + 1)
        clips.append(y[start:start + CLIP] * rng.uniform(0.0, 1.0))
    return clips


def _features(root: Path, index: dict[str, list[tuple[str, int]]], noise_files: list[Path],
              progress=None) -> dict[str, np.ndarray]:
    noise = {p: read_wav(p) for p in noise_files}
    rng = np.random.RandomState(SPLIT_SEED)
    x, y, split_of = [], [], []
    for k, split in enumerate(("train", "val", "test")):
        n_words = sum(c != CLASSES.index(UNKNOWN) for _, c in index[split])
        clips = [(read_wav(root / rel), c) for rel, c in index[split]]
        clips += [(s, CLASSES.index(SILENCE))
                  for s in silence_clips(noise, split, math.ceil(n_words * SILENCE_PERCENT / 100), rng)]
        for clip, c in clips:
            x.append(mfcc(clip))
            y.append(c)
            split_of.append(k)
    return {"features": np.stack(x), "labels": np.array(y, dtype=np.int64),
            "splits": np.array(split_of, dtype=np.int8)}


@register_dataset("speech-commands", kind="image", arg="DIR",
                  summary="Speech Commands v0.02, 12 classes, 1x126x80 MFCC (librosa), cached")
def load_speech_commands(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    root = find_root(arg)
    _import_librosa()
    index, noise_files = _index(root)
    lists = {root / "validation_list.txt", root / "testing_list.txt"}
    sources = sorted({root / rel for items in index.values() for rel, _ in items} | set(noise_files) | lists)
    params = {"mfcc": MFCC, "classes": CLASSES, "silence_percent": SILENCE_PERCENT,
              "unknown_percent": UNKNOWN_PERCENT, "noise_shares": NOISE_SHARES, "seed": SPLIT_SEED}
    fingerprint = source_fingerprint(root, sources, params)
    cache = ArrayCache("speech-commands", root)
    arrays = cache.load(fingerprint)
    if arrays is None:
        log.info("computing MFCCs of %d Speech Commands clips from %s", len(sources) - len(lists), root)
        arrays = _features(root, index, noise_files)
        cache.store(fingerprint, arrays, {"source": str(root), "mfcc": MFCC})
    splits = arrays["splits"]
    indices = {s: np.flatnonzero(splits == k) for k, s in enumerate(("train", "val", "test"))}
    for s, idx in indices.items():
        if len(idx) == 0:
            raise DataError(f"speech-commands: the {s} split is empty under {root}: "
                            f"{'validation_list.txt' if s == 'val' else 'testing_list.txt' if s == 'test' else 'the word folders'}"
                            " must name some clips")
    info = {"source": f"official Speech Commands folder {root}",
            "split": "test = testing_list.txt, val = validation_list.txt, train = the rest; per split "
                     f"{UNKNOWN} drawn to {UNKNOWN_PERCENT:g}% and {SILENCE} cut from the split's share of "
                     f"{NOISE_DIR} to {SILENCE_PERCENT:g}% of the ten words' clips (seed {SPLIT_SEED})",
            "features": "librosa MFCC " + ", ".join(f"{k}={v}" for k, v in MFCC.items())
                        + "; log-mel in dB; time x coefficient",
            "cache": str(cache.folder)}
    return build_image_splits(name, torch.from_numpy(arrays["features"]), arrays["labels"], indices,
                              num_classes=len(CLASSES), classes=list(CLASSES), info=info, scale=1.0,
                              size=size, channels=channels)
