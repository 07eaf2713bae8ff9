"""speech-commands:DIR on small WAVs written in the official v0.02 layout (tones; espeak-ng words
when the tool is installed)."""

import math
import shutil
import subprocess

import numpy as np
import pytest
from scipy.io import wavfile

from layerwise.cli import main
from layerwise.data import load_dataset
from layerwise.data.speech_commands import CLASSES, MFCC, WORDS, mfcc
from layerwise.errors import DataError
from layerwise.models import build_model
from layerwise.results import read_results

pytest.importorskip("librosa", reason="speech-commands needs the audio extra (librosa)")

UNKNOWN_WORDS = ["bed", "cat"]
RATE = 16_000


def tone(freq, seconds=1.0, amp=0.5):
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


def write_speech(root, clips=5, noise_seconds=12.0):
    """Each word a tone of its own pitch, `clips` per word (clip 0 -> testing_list, 1 ->
    validation_list), two unknown words, one noise recording. Returns the per-split word counts."""
    r = root / "speech_commands_v0.02"
    (r / "_background_noise_").mkdir(parents=True)
    rng = np.random.default_rng(0)
    val, test = [], []
    for w_i, word in enumerate(WORDS + UNKNOWN_WORDS):
        (r / word).mkdir()
        for c in range(clips):
            name = f"{word}/{c:08x}_nohash_0.wav"
            seconds = 0.8 if c == 2 else 1.0        # a short clip: padded to 1 s
            wavfile.write(r / name, RATE, tone(200 + 150 * w_i + 7 * c, seconds))
            (test if c == 0 else val if c == 1 else []).append(name)
    noise = (rng.normal(0, 0.1, int(RATE * noise_seconds)) * 32767).astype(np.int16)
    wavfile.write(r / "_background_noise_" / "white_noise.wav", RATE, noise)
    (r / "validation_list.txt").write_text("\n".join(val) + "\n")
    (r / "testing_list.txt").write_text("\n".join(test) + "\n")
    n_words = {"train": len(WORDS) * (clips - 2), "val": len(WORDS), "test": len(WORDS)}
    return r, n_words


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))


def test_layout_classes_and_split_sizes(tmp_path, checked):
    r, n_words = write_speech(tmp_path)
    d = load_dataset(f"speech-commands:{tmp_path}")
    assert d.input_shape == (1, 126, 80) and d.num_classes == 12 and d.classes == CLASSES
    extra = {k: 2 * math.ceil(n * 0.1) for k, n in n_words.items()}  # 10 % unknown + 10 % silence
    checked(d, sizes={k: n_words[k] + extra[k] for k in n_words}, atol=1e-3)
    test_labels = d.test.labels[d.test.indices].tolist()
    assert sorted(test_labels) == sorted([0, 1] + list(range(2, 12)))  # 1 silence, 1 unknown, 10 words
    # the network of UnIT Table 1 gets exactly its FC(7616, 12) on this input
    assert build_model("kws-cnn", d.input_shape, d.num_classes).fc.in_features == 7616


def test_mfcc_matches_the_stated_settings():
    """A 1 kHz tone: its energy sits in the mel band around 1 kHz; the DCT of the log-mel
    spectrum, recomputed here with numpy from librosa's mel filters, equals the feature."""
    import librosa

    y = tone(1000).astype(np.float32) / 32768
    feat = mfcc(y)[0]                                   # (126, 80): time x coefficient
    assert feat.shape == (126, 80)
    spec = np.abs(librosa.stft(y, n_fft=512, win_length=480, hop_length=128, window="hann", center=True)) ** 2
    mel = librosa.filters.mel(sr=RATE, n_fft=512, n_mels=80, fmin=20.0, fmax=8000.0) @ spec
    log_mel = 10 * np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 80.0)     # top_db = 80
    n = 80
    k = np.arange(n)[:, None]
    dct = np.sqrt(2 / n) * np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))
    dct[0] /= np.sqrt(2)                                # orthonormal DCT-II
    expect = (dct @ log_mel).T
    assert np.allclose(feat, expect, rtol=1e-4, atol=2e-3)
    centre = librosa.mel_frequencies(n_mels=82, fmin=20.0, fmax=8000.0)[1:-1]
    assert abs(centre[int(log_mel[:, 60].argmax())] - 1000) < 60
    assert MFCC["hop_length"] * 125 == 16_000           # 126 centred frames of 1 s


def test_cache_is_reused_and_rebuilt_when_a_source_changes(tmp_path, caplog):
    import logging
    r, _ = write_speech(tmp_path, clips=3)
    name = f"speech-commands:{tmp_path}"
    first = load_dataset(name)
    folder = tmp_path / "cache"
    (cache,) = [p for p in folder.iterdir() if p.name.startswith("speech-commands-")]
    assert (cache / "meta.json").is_file() and (cache / "features.npy").is_file()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        again = load_dataset(name)
    assert "from the cache" in caplog.text
    assert np.array_equal(first.train.raw.numpy(), again.train.raw.numpy())
    # an edited clip (new size) invalidates the cache: the features follow the file
    wavfile.write(r / "yes" / "00000002_nohash_0.wav", RATE, tone(3000, 0.5))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        changed = load_dataset(name)
    assert "source files changed" in caplog.text
    assert not np.array_equal(first.train.raw.numpy(), changed.train.raw.numpy())
    # a damaged cache file fails its checksum and is rebuilt, never used
    data = bytearray((cache / "features.npy").read_bytes())
    data[-1] ^= 0xFF
    (cache / "features.npy").write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        repaired = load_dataset(name)
    assert "checksum mismatch" in caplog.text
    assert np.array_equal(repaired.train.raw.numpy(), changed.train.raw.numpy())


def test_bad_files_are_one_line_errors(tmp_path):
    r, _ = write_speech(tmp_path, clips=3)
    name = f"speech-commands:{tmp_path}"
    bad = r / "no" / "00000002_nohash_0.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(DataError, match=r"no/00000002_nohash_0.wav cannot be read as a WAV file") as e:
        load_dataset(name)
    assert "\n" not in str(e.value)
    wavfile.write(bad, 22_050, tone(400))
    with pytest.raises(DataError, match="sampled at 22050 Hz, expected 16000: resample"):
        load_dataset(name)
    wavfile.write(bad, RATE, np.stack([tone(400), tone(400)], axis=1))
    with pytest.raises(DataError, match="has 2 channels, expected 1"):
        load_dataset(name)
    wavfile.write(bad, RATE, tone(400))
    with (r / "testing_list.txt").open("a") as fh:
        fh.write("yes/missing_nohash_0.wav\n")
    with pytest.raises(DataError, match="names yes/missing_nohash_0.wav, which is not in"):
        load_dataset(name)
    (r / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="missing testing_list.txt"):
        load_dataset(name)
    with pytest.raises(DataError, match="no Speech Commands files"):
        load_dataset(f"speech-commands:{r / 'yes'}")


def test_short_noise_recording_is_refused(tmp_path):
    write_speech(tmp_path, clips=3, noise_seconds=4.0)
    with pytest.raises(DataError, match="no background-noise file has 1 s in its val share"):
        load_dataset(f"speech-commands:{tmp_path}")


def test_spoken_words_from_espeak_ng(tmp_path):
    """Real speech, when Debian's espeak-ng is installed (resampled to 16 kHz)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: the tone fixtures cover the layout")
    from scipy.signal import resample_poly

    r, _ = write_speech(tmp_path, clips=3)
    for word in ("yes", "no"):
        raw = tmp_path / f"{word}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), word], check=True, capture_output=True)
        rate, y = wavfile.read(raw)
        y16 = resample_poly(y.astype(np.float64), RATE, rate).clip(-32768, 32767).astype(np.int16)
        wavfile.write(r / word / "00000002_nohash_0.wav", RATE, y16[:RATE])
    d = load_dataset(f"speech-commands:{tmp_path}")
    assert len(d.train) > 0 and d.input_shape == (1, 126, 80)


@pytest.mark.slow
def test_unit_runs_on_kws_end_to_end(tmp_path, capsys):
    write_speech(tmp_path / "data", clips=8)
    out = tmp_path / "run"
    rc = main(["unit", "--model", "kws-cnn", "--dataset", f"speech-commands:{tmp_path / 'data'}", "--quick",
               "--epochs", "3", "--no-shift", "--val-limit", "6", "--test-limit", "6", "--sweep", "20", "--threads", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "kws-cnn / speech-commands:" in text and "[1x126x80]" in text
    doc = read_results(out)
    assert {v["name"] for v in doc["variants"]} >= {"dense", "unit", "magnitude"}
