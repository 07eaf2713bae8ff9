"""The bad-input suite: every input in CASES gets exit code 2 and ONE line on stderr (command
line), or the documented exception (Python API), and nothing already saved changes.

``LAYERWISE_WRITE_DOCS=1 pytest tests/test_bad_inputs.py`` rewrites docs/robustness.md from the
cases and the lines the user actually saw; ``test_doc_lists_every_case`` keeps the page in step
with this table.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from layerwise.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
SEEN: dict[str, str] = {}          # case id -> the line the user saw (paths replaced by DIR)


@dataclass
class Case:
    id: str
    what: str                                   # the bad input, in words
    argv: list[str] | None = None               # command line (``{tmp}`` is the test's folder)
    api: Callable | None = None                 # or a Python call: api(tmp) raises
    error: type | tuple = ()                    # the exception an API call raises
    words: tuple[str, ...] = ()                 # words the line must hold (case-insensitive)
    setup: Callable | None = None               # setup(tmp) makes the files the case needs
    keep: tuple[str, ...] = ()                  # files (relative to tmp) that must not change
    group: str = "command line"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/layerwise-pwned",))


def _malicious_pt(tmp: Path) -> None:
    _write(tmp / "evil.pt", pickle.dumps({"model": _Evil()}))


def _checkpoint_of(model: str, shape, classes: int):
    def make(tmp: Path) -> None:
        from layerwise.models import build_model
        from layerwise.train import save_checkpoint

        m = build_model(model, shape, classes)
        save_checkpoint(tmp / "other.pt", m)
    return make


def _results(text: bytes | str):
    def make(tmp: Path) -> None:
        _write(tmp / "res" / "results.json", text if isinstance(text, bytes) else text.encode())
    return make


def _busy(tmp: Path) -> None:
    # a lock written by a live process that is not this one (the test runner's parent)
    import json
    import socket
    (tmp / "busy").mkdir()
    (tmp / "busy" / ".layerwise.lock").write_text(json.dumps(
        {"pid": os.getppid(), "host": socket.gethostname(), "started": "2026-12-01 00:00:00",
         "command": "layerwise train"}))


def _trained(tmp: Path) -> None:
    _write(tmp / "run" / "checkpoint.pt", b"a trained checkpoint")


def _trained_adam(tmp: Path) -> None:
    assert main(["train", *DIGITS, "--epochs", "1", "--threads", "1", "--out", str(tmp / "run")]) == 0


def _trained_bad_epoch(tmp: Path) -> None:
    _trained_adam(tmp)
    ck = torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)
    ck["epoch"] = "x"
    torch.save(ck, tmp / "run" / "checkpoint.pt")


def _trained_bad_history(tmp: Path) -> None:
    _trained_adam(tmp)
    ck = torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)
    ck["history"] = "abc"
    torch.save(ck, tmp / "run" / "checkpoint.pt")


def _trained_bad_rng(tmp: Path) -> None:
    _trained_adam(tmp)
    ck = torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)
    ck["rng"]["torch"] = torch.zeros(10, dtype=torch.uint8)
    torch.save(ck, tmp / "run" / "checkpoint.pt")


def _api_config(**kw):
    def call(tmp):
        from layerwise.train import TrainConfig
        TrainConfig(**kw).validate()
    return call


def _api_load(*args, **kw):
    def call(tmp):
        from layerwise.data import load_dataset
        load_dataset(*args, **kw)
    return call


def _api_five_classes(tmp):
    from layerwise.data import load_dataset
    from layerwise.train import TrainConfig, train
    data = load_dataset("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    train(model, data, TrainConfig(epochs=1))


def _api_packed_forged(tmp):
    import hashlib
    import json
    import zlib

    from layerwise.adalayer import load_packed_bytes
    from layerwise.adalayer.packed import DIGEST, FLAG_ZLIB, HEADER, MAGIC, VERSION

    from .adalayer.test_packed_forged import valid
    data = valid()
    _, _, flags, _, meta_len = HEADER.unpack_from(data, 0)
    raw = data[HEADER.size:HEADER.size + meta_len]
    meta = json.loads(zlib.decompress(raw) if flags & FLAG_ZLIB else raw)
    payload = data[HEADER.size + meta_len:-DIGEST]
    meta["tensors"][0]["shape"] = [2 ** 46]                  # 64 TiB, with a valid checksum
    mb = zlib.compress(json.dumps(meta).encode())
    body = HEADER.pack(MAGIC, VERSION, FLAG_ZLIB, 0, len(mb)) + mb + payload
    load_packed_bytes(body + hashlib.sha256(body).digest())


def _api_convert_nothing(tmp):
    from layerwise import unit
    unit.convert(nn.Sequential(nn.ReLU(), nn.Flatten()))


def _api_calibrate_empty(tmp):
    from layerwise import unit
    m = nn.Sequential(nn.Linear(4, 2))
    unit.convert(m)
    unit.calibrate(m, [])


def _api_threshold_negative(tmp):
    from layerwise import unit
    m = nn.Sequential(nn.Linear(4, 2))
    unit.convert(m)
    m[0].set_threshold(-1.0)


def _api_rowskip_wrong_width(tmp):
    from layerwise.unit import RowPlan, rowskip_linear
    rowskip_linear(torch.ones(1, 5), RowPlan.build(torch.ones(2, 3), None, torch.tensor(0.1)))


def _api_unknown_dataset(tmp):
    from layerwise.data import load_dataset
    load_dataset("nosuch")


def _api_lwac_wrong_input(tmp):
    from layerwise import lwac
    from layerwise.models import build_model
    lwac.attach(build_model("resnet20", (3, 32, 32), 10), torch.zeros(1, 3, 7))


def _api_stats_mismatch(tmp):
    from layerwise.stats import paired_difference
    paired_difference([1, 0, 1], [1, 0])


def _api_lwac_no_blocks(tmp):
    from layerwise import lwac
    lwac.attach(nn.Sequential(nn.Linear(4, 2)), torch.zeros(1, 4))


T = "{tmp}"
DIGITS = ["--model", "tiny-cnn", "--dataset", "digits"]
CASES: list[Case] = [
    # names
    Case("unknown-model", "a model name that is not registered",
         ["train", "--model", "nosuch", "--dataset", "digits", "--out", f"{T}/o"], words=("unknown model", "valid models")),
    Case("unknown-dataset", "a dataset name that is not registered",
         ["train", "--model", "tiny-cnn", "--dataset", "nosuch", "--out", f"{T}/o"], words=("unknown dataset",)),
    Case("dataset-needs-folder", "a file-backed dataset without its folder",
         ["train", "--model", "resnet20", "--dataset", "cifar10", "--out", f"{T}/o"], words=("needs an argument", "cifar10:DIR")),
    Case("dataset-takes-no-arg", "an argument to a dataset that takes none",
         ["train", "--model", "tiny-cnn", "--dataset", "digits:foo", "--out", f"{T}/o"], words=("takes no argument",)),
    Case("dataset-folder-missing", "a dataset folder that does not exist",
         ["train", "--model", "tiny-cnn", "--dataset", f"mnist:{T}/nope", "--out", f"{T}/o"], words=("does not exist",)),
    Case("dataset-folder-empty", "a dataset folder without the files",
         ["train", "--model", "tiny-cnn", "--dataset", f"mnist:{T}", "--out", f"{T}/o"], words=("no idx files",)),
    Case("ela-wrong-model", "ELA on a model without layer attention",
         ["ela", *DIGITS, "--out", f"{T}/o"], words=("resnet20",)),
    # numbers
    Case("percentile-range", "a UnIT percentile outside (0, 100)",
         ["unit", *DIGITS, "--percentile", "150", "--out", f"{T}/o"], words=("--percentile", "between 0 and 100")),
    Case("percentile-text", "a UnIT percentile that is not a number",
         ["unit", *DIGITS, "--percentile", "abc", "--out", f"{T}/o"], words=("percentile",)),
    Case("sweep-text", "a UnIT sweep that is not a list of numbers",
         ["unit", *DIGITS, "--sweep", "a,b", "--out", f"{T}/o"], words=("--sweep",)),
    Case("groups-zero", "zero UnIT threshold groups",
         ["unit", *DIGITS, "--groups", "0", "--out", f"{T}/o"], words=("--groups",)),
    Case("budget-above-one", "a size budget above 1",
         ["compress", "--model", "resnet20", "--dataset", "digits", "--budget", "2", "--out", f"{T}/o"], words=("--budget",)),
    Case("budget-zero", "a size budget of 0",
         ["compress", "--model", "resnet20", "--dataset", "digits", "--budget", "0", "--out", f"{T}/o"], words=("--budget",)),
    Case("latency-budget-negative", "a negative latency budget",
         ["lwac", "--model", "resnet20", "--dataset", "digits", "--latency-budget", "-1", "--out", f"{T}/o"], words=("latency budget",)),
    Case("epochs-negative", "a negative number of epochs",
         ["train", *DIGITS, "--epochs", "-1", "--out", f"{T}/o"], words=("epochs",)),
    Case("channels-two", "an image channel count other than 1 or 3",
         ["profile", *DIGITS, "--channels", "2", "--out", f"{T}/o"], words=("channels",)),
    Case("size-zero", "an image size of 0",
         ["profile", *DIGITS, "--size", "0", "--out", f"{T}/o"], words=("size",)),
    Case("device-cuda", "a CUDA device on a machine without one",
         ["profile", *DIGITS, "--device", "cuda", "--out", f"{T}/o"], words=("cuda",)),
    Case("shape-mismatch", "an image model on a time-series dataset",
         ["profile", "--model", "tiny-cnn", "--dataset", "basic-motions", "--out", f"{T}/o"], words=("tiny-cnn",)),
    # files
    Case("checkpoint-missing", "a checkpoint path that does not exist",
         ["profile", *DIGITS, "--checkpoint", f"{T}/none.pt", "--out", f"{T}/o"], words=("does not exist",)),
    Case("checkpoint-malicious", "a checkpoint that pickles a call to os.system",
         ["profile", *DIGITS, "--checkpoint", f"{T}/evil.pt", "--out", f"{T}/o"], words=("cannot load",),
         setup=_malicious_pt),
    Case("checkpoint-garbage", "a checkpoint of random bytes",
         ["profile", *DIGITS, "--checkpoint", f"{T}/junk.pt", "--out", f"{T}/o"], words=("cannot load",),
         setup=lambda t: _write(t / "junk.pt", os.urandom(4096))),
    Case("checkpoint-other-model", "a checkpoint of another model",
         ["profile", *DIGITS, "--checkpoint", f"{T}/other.pt", "--out", f"{T}/o"], words=("other.pt",),
         setup=_checkpoint_of("resnet20", (3, 32, 32), 10)),
    Case("report-missing", "a results folder that does not exist",
         ["report", f"{T}/nope"], words=("no results file",)),
    Case("report-bad-json", "a results.json that is not JSON",
         ["report", f"{T}/res", "--out", f"{T}/r.html"], words=("results.json",),
         setup=_results(b"{not json")),
    # output folders and runs
    Case("out-is-file", "--out that is a file", ["train", *DIGITS, "--out", f"{T}/notes.txt"],
         words=("is a file",), setup=lambda t: _write(t / "notes.txt", b"my notes"), keep=("notes.txt",)),
    Case("out-under-file", "--out inside a file", ["train", *DIGITS, "--out", f"{T}/notes.txt/run"],
         words=("inside",), setup=lambda t: _write(t / "notes.txt", b"my notes"), keep=("notes.txt",)),
    Case("out-under-proc", "--out under /proc", ["train", *DIGITS, "--out", "/proc/layerwise-run"],
         words=("--out",)),
    Case("out-under-sys", "--out under /sys", ["train", *DIGITS, "--out", "/sys/layerwise-run"],
         words=("--out",)),
    Case("out-in-use", "--out held by another live run", ["train", *DIGITS, "--out", f"{T}/busy"],
         words=("in use", "pid"), setup=_busy, keep=("busy/.layerwise.lock",)),
    Case("out-inside-in-use", "--out inside a folder another live run holds",
         ["train", *DIGITS, "--out", f"{T}/busy/sub"], words=("another layerwise run",), setup=_busy),
    Case("fresh-over-checkpoint", "a fresh run into a folder holding a checkpoint",
         ["train", *DIGITS, "--epochs", "1", "--out", f"{T}/run"], words=("--resume", "--overwrite"),
         setup=_trained, keep=("run/checkpoint.pt",)),
    Case("epochs-zero-over-checkpoint", "--epochs 0 into a folder holding a checkpoint",
         ["train", *DIGITS, "--epochs", "0", "--out", f"{T}/run"], words=("--overwrite",),
         setup=_trained, keep=("run/checkpoint.pt",)),
    Case("resume-and-overwrite", "--resume and --overwrite together",
         ["train", *DIGITS, "--resume", "--overwrite", "--out", f"{T}/run"], words=("contradict",),
         setup=_trained, keep=("run/checkpoint.pt",)),
    Case("resume-nothing", "--resume where no run was saved",
         ["train", *DIGITS, "--resume", "--out", f"{T}/fresh"], words=("cannot resume",)),
    Case("resume-empty-checkpoint", "--resume on a 0-byte checkpoint",
         ["train", *DIGITS, "--resume", "--out", f"{T}/e"], words=("empty",),
         setup=lambda t: _write(t / "e" / "checkpoint.pt", b""), keep=("e/checkpoint.pt",)),
    Case("checkpoint-empty", "--checkpoint of 0 bytes",
         ["profile", *DIGITS, "--checkpoint", f"{T}/empty.pt", "--out", f"{T}/o"], words=("empty",),
         setup=lambda t: _write(t / "empty.pt", b"")),
    Case("checkpoint-folder", "--checkpoint that is a folder",
         ["profile", *DIGITS, "--checkpoint", f"{T}", "--out", f"{T}/o"], words=("is a folder",)),
    Case("checkpoint-truncated", "a checkpoint cut after two bytes",
         ["profile", *DIGITS, "--checkpoint", f"{T}/trunc.pt", "--out", f"{T}/o"], words=("cannot load",),
         setup=lambda t: _write(t / "trunc.pt", b"\x80\x02")),
    # limits
    Case("size-huge", "--size 3000 (a 38.8 GB dataset)", ["profile", *DIGITS, "--size", "3000", "--out", f"{T}/o"],
         words=("1024",)),
    Case("batch-size-huge", "--batch-size 100000", ["train", *DIGITS, "--batch-size", "100000", "--out", f"{T}/o"],
         words=("16384",)),
    Case("threads-huge", "--threads 5000", ["profile", *DIGITS, "--threads", "5000", "--out", f"{T}/o"],
         words=("1024",)),
    Case("epochs-text", "--epochs that is not a number", ["train", *DIGITS, "--epochs", "many", "--out", f"{T}/o"],
         words=("invalid int",)),
    Case("command-typo", "a misspelt command", ["trian", *DIGITS], words=("invalid choice",)),
    # results files and reports
    Case("report-n-text", "a results.json whose latency n is text", ["report", f"{T}/res", "--out", f"{T}/r.html"],
         words=("whole numbers",), setup=_results(
             '{"schema": "layerwise.results/1", "method": "x", "model": "m", "dataset": "d", "env": {}, '
             '"variants": [{"name": "dense", "accuracy": 0.5, "macs": 1, "macs_executed": 1, "params": 1, '
             '"size_bytes": 1, "latency_ms": {"median": 1, "iqr": 0, "n": "many", "batch": 1}, '
             '"peak_mem_bytes": null, "energy_j": null, "extra": {}}], "figures": []}')),
    Case("report-bare-number", "a results.json that is a bare number", ["report", f"{T}/res", "--out", f"{T}/r.html"],
         words=("not a number",), setup=_results(b"3")),
    Case("report-not-utf8", "a results.json that is not UTF-8", ["report", f"{T}/res", "--out", f"{T}/r.html"],
         words=("not utf-8",), setup=_results(b'{"a": "\xe9\xff"}')),
    Case("report-huge-integer", "a results.json with a 4301-digit number", ["report", f"{T}/res", "--out", f"{T}/r.html"],
         words=("not valid json",), setup=_results(b"1" * 4301)),
    Case("report-out-under-file", "report --out inside a file",
         ["report", f"{T}/res", "--out", f"{T}/notes.txt/r.html"], words=("inside",),
         setup=lambda t: (_write(t / "notes.txt", b"x"), _results(b"3")(t))),
    # checkpoints of another run, or damaged inside
    Case("resume-other-optimizer", "--resume --optimizer sgd after an Adam run",
         ["train", *DIGITS, "--resume", "--optimizer", "sgd", "--epochs", "2", "--out", f"{T}/run"],
         words=("another run", "adam", "sgd"), setup=_trained_adam, keep=("run/checkpoint.pt",)),
    Case("resume-other-seed", "--resume with another --seed",
         ["train", *DIGITS, "--resume", "--seed", "5", "--epochs", "2", "--out", f"{T}/run"],
         words=("another run", "seed"), setup=_trained_adam, keep=("run/checkpoint.pt",)),
    Case("checkpoint-epoch-text", "a checkpoint whose epoch is 'x'",
         ["train", *DIGITS, "--resume", "--epochs", "2", "--out", f"{T}/run"], words=("'epoch'",),
         setup=_trained_bad_epoch, keep=("run/checkpoint.pt",)),
    Case("checkpoint-history-text", "a checkpoint whose history is not a list",
         ["train", *DIGITS, "--resume", "--epochs", "2", "--out", f"{T}/run"], words=("'history'",),
         setup=_trained_bad_history, keep=("run/checkpoint.pt",)),
    Case("checkpoint-rng-size", "a checkpoint with a 10-byte RNG state",
         ["train", *DIGITS, "--resume", "--epochs", "2", "--out", f"{T}/run"], words=("rng",),
         setup=_trained_bad_rng, keep=("run/checkpoint.pt",)),
    # Python API
    Case("api-config-momentum", "TrainConfig(momentum=-5)", api=_api_config(momentum=-5.0),
         error="LayerwiseError", words=("momentum",), group="Python API"),
    Case("api-config-weight-decay", "TrainConfig(weight_decay=-1)", api=_api_config(weight_decay=-1.0),
         error="LayerwiseError", words=("weight_decay",), group="Python API"),
    Case("api-config-epochs-float", "TrainConfig(epochs=2.5)", api=_api_config(epochs=2.5),
         error="LayerwiseError", words=("epochs",), group="Python API"),
    Case("api-load-size-float", "load_dataset('digits', size=28.0)", api=_api_load("digits", size=28.0),
         error="DataError", words=("size",), group="Python API"),
    Case("api-load-none", "load_dataset(None)", api=_api_load(None),
         error="LayerwiseError", words=("not a string",), group="Python API"),
    Case("api-load-size-huge", "load_dataset('digits', size=3000)", api=_api_load("digits", size=3000),
         error="DataError", words=("1024",), group="Python API"),
    Case("api-five-class-model", "a 5-class model trained on 10-class data", api=_api_five_classes,
         error="ShapeMismatchError", words=("10 classes",), group="Python API"),
    Case("api-packed-forged", "a packed file whose metadata claims a 64 TiB tensor under a valid SHA-256",
         api=_api_packed_forged, error="LayerwiseError", words=("corrupted",), group="Python API"),
    Case("api-convert-nothing", "unit.convert on a model without Linear or Conv layers", api=_api_convert_nothing,
         error="LayerwiseError", words=("no nn.linear",), group="Python API"),
    Case("api-calibrate-empty", "unit.calibrate with an empty loader", api=_api_calibrate_empty,
         error="LayerwiseError", words=("no batches",), group="Python API"),
    Case("api-threshold-negative", "a negative UnIT threshold", api=_api_threshold_negative,
         error="LayerwiseError", words=(">= 0",), group="Python API"),
    Case("api-rowskip-width", "row skipping on an input of the wrong width", api=_api_rowskip_wrong_width,
         error="LayerwiseError", words=("expects 3",), group="Python API"),
    Case("api-unknown-dataset", "load_dataset with an unknown name", api=_api_unknown_dataset,
         error="UnknownNameError", words=("unknown dataset",), group="Python API"),
    Case("api-paired-mismatch", "a paired comparison over different numbers of images", api=_api_stats_mismatch,
         error="LayerwiseError", words=("same images",), group="Python API"),
    Case("api-lwac-no-blocks", "lwac.attach on a model without blocks", api=_api_lwac_no_blocks,
         error="LayerwiseError", words=(), group="Python API"),
]


def _norm(line: str, tmp: Path) -> str:
    return line.replace(str(tmp), "DIR")


def _snapshot(tmp: Path, names) -> dict[str, bytes]:
    return {n: (tmp / n).read_bytes() for n in names if (tmp / n).is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    if case.setup:
        case.setup(tmp_path)
    before = _snapshot(tmp_path, case.keep)
    if case.argv is not None:
        rc = main([a.replace(T, str(tmp_path)) for a in case.argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, err
        assert len(err) == 1, err
        line = err[0]
    else:
        import layerwise.errors as errors

        etype = getattr(errors, case.error)
        with pytest.raises(etype) as exc:
            case.api(tmp_path)
        line = f"{type(exc.value).__name__}: {exc.value}"
        assert "\n" not in line
    for w in case.words:
        assert w.lower() in line.lower(), (w, line)
    assert _snapshot(tmp_path, case.keep) == before
    assert not Path("/tmp/layerwise-pwned").exists()
    SEEN[case.id] = _norm(line, tmp_path)


def _render() -> str:
    out = ["# Robustness: every bad input tried, and what the user sees", "",
           "Written by `LAYERWISE_WRITE_DOCS=1 pytest tests/test_bad_inputs.py` from the table in that",
           "file; each row is a test. On the command line every one exits with code 2 and prints the one",
           "line shown (paths of the test's folder are written DIR); through the Python API it raises the",
           "exception shown. Files a case must not damage are compared byte for byte before and after.", "",
           "The same promise is tested in more depth elsewhere (each a pytest module):", "",
           "- `tests/test_robust_cli.py`, `tests/test_runlock.py`: output folders checked before any work, one",
           "  run per folder (a lock a dead process does not hold), checkpoints never overwritten without",
           "  `--resume`/`--overwrite`, leftover temporary files removed, OS errors (disk full, read-only,",
           "  permission) as one line, bugs as exit 1 with `--debug` for the traceback;",
           "- `tests/test_robust_api.py`: 55 damaged checkpoint fields, resume of another run's checkpoint",
           "  (model, dataset, seed, optimizer), 27 bad `TrainConfig` values, 16 bad `load_dataset` arguments,",
           "  class-count mismatches, and hypothesis fuzzing of the checkpoint loader;",
           "- `tests/test_train.py::test_sigkill_then_resume_is_exact`: SIGKILL between epochs, mid-epoch and at",
           "  four points of a checkpoint write, then `--resume`: weights equal to an uninterrupted run;",
           "- `tests/adalayer/test_packed_forged.py`: 40 forged metadata fields under a valid SHA-256, forged",
           "  payloads, and fuzzing: only `PackedFileError`, nothing allocated from forged sizes;",
           "- `tests/test_fuzz_loaders.py`: random and mutated bytes into the IDX, CIFAR (binary and pickle)",
           "  and results.json readers: only the documented error;",
           "- `tests/data/test_mhealth.py`: NaN and inf in sensor files counted, interpolated locally, long",
           "  gaps dropped;",
           "- property tests of the laws the code relies on: `tests/*/test_laws.py`.", ""]
    for group in dict.fromkeys(c.group for c in CASES):
        out += [f"## {group}", "", "| case | input | what the user sees |", "|---|---|---|"]
        for c in CASES:
            if c.group != group:
                continue
            shown = SEEN.get(c.id, "(not run)").replace("|", "\\|")
            if c.argv is not None:
                cmd = "layerwise " + " ".join(a.replace(T, "DIR") for a in c.argv)
                what = f"{c.what}: `{cmd}`"
            else:
                what = c.what
            out.append(f"| `{c.id}` | {what} | {shown} |")
        out.append("")
    return "\n".join(out)


def test_doc_lists_every_case():
    # runs last in this module: writes the page when asked, and checks it names every case
    if os.environ.get("LAYERWISE_WRITE_DOCS") == "1":
        assert len(SEEN) == len(CASES), "run the whole module to write the page"
        DOC.write_text(_render() + "\n")
    text = DOC.read_text() if DOC.is_file() else ""
    missing = [c.id for c in CASES if f"`{c.id}`" not in text]
    assert not missing, f"docs/robustness.md lacks {missing}: run LAYERWISE_WRITE_DOCS=1 pytest tests/test_bad_inputs.py"
    assert len(CASES) >= 40


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(re.fullmatch(r"[a-z0-9-]+", c.id) for c in CASES)
