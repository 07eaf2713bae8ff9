"""The promise of the command line: bad input exits with code 2 and ONE line on stderr that says
what is wrong and what to do, it fails before any expensive work, and nothing saved is lost.
A bug exits with 1 and one line that says so (``--debug`` shows the traceback)."""

import errno
import json
import os
import tempfile

import pytest
import torch

import layerwise.cli as cli
import layerwise.experiments.common as common
from layerwise.cli import main
from layerwise.errors import CheckpointError
from layerwise.results import Results, Variant, env_info, write_results
from layerwise.storage import safe_torch_load

TINY = ["--model", "tiny-cnn", "--dataset", "digits"]


@pytest.fixture
def no_work(monkeypatch):
    """Loading data fails the test: the error must come before any expensive work."""
    def load_dataset(*a, **k):
        raise AssertionError("data was loaded before the bad input was refused")
    monkeypatch.setattr(common, "load_dataset", load_dataset)


def one_line(capsys, *words, code=2, rc=None):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert rc == code, err
    for w in words:
        assert w in err[0], (w, err[0])
    assert "Traceback" not in err[0]
    return err[0]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_checkpoint(folder, name="checkpoint.pt"):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "layerwise.checkpoint/1", "epoch": 7}, path)
    return path


# --------------------------------------------------------------------------- 1. output folders

@pytest.mark.parametrize("command", [["train", *TINY, "--epochs", "1"], ["profile", *TINY]])
def test_out_that_is_a_file_fails_before_work(tmp_path, capsys, no_work, command):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    rc = main([*command, "--out", str(f)])
    one_line(capsys, "layerwise: error:", str(f), "is a file", rc=rc)
    assert f.read_text() == "keep me"


def test_out_under_a_file_fails_before_work(tmp_path, capsys, no_work):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    rc = main(["train", *TINY, "--out", str(f / "run")])
    one_line(capsys, "inside", str(f), "which is a file", rc=rc)
    assert f.read_text() == "keep me"


def test_out_under_proc_fails_before_work(capsys, no_work):
    rc = main(["train", *TINY, "--out", "/proc/layerwise-run"])
    one_line(capsys, "cannot create the --out folder /proc/layerwise-run", "choose a folder", rc=rc)


def test_out_on_a_read_only_file_system_fails_before_work(tmp_path, capsys, no_work, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    rc = main(["train", *TINY, "--out", str(out)])
    one_line(capsys, str(out), "not writable", "Read-only file system", rc=rc)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_without_write_permission_fails_before_work(tmp_path, capsys, no_work):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        rc = main(["train", *TINY, "--out", str(out)])
    finally:
        out.chmod(0o700)
    one_line(capsys, str(out), "not writable", rc=rc)


# --------------------------------------------------------------------------- 3. checkpoints kept

def test_fresh_train_never_overwrites_a_checkpoint(tmp_path, capsys, no_work):
    fake_checkpoint(tmp_path)
    (tmp_path / "results.json").write_text('{"old": 1}')
    before = snapshot(tmp_path)
    rc = main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path)])
    one_line(capsys, "already holds", "checkpoint.pt", "--resume", "--overwrite", rc=rc)
    assert snapshot(tmp_path) == before


def test_train_epochs_0_keeps_a_trained_checkpoint(tmp_path, capsys, no_work):
    fake_checkpoint(tmp_path)
    before = snapshot(tmp_path)
    rc = main(["train", *TINY, "--epochs", "0", "--out", str(tmp_path)])
    one_line(capsys, "already holds", rc=rc)
    rc = main(["train", *TINY, "--epochs", "0", "--overwrite", "--out", str(tmp_path)])
    one_line(capsys, "--epochs 0 trains nothing", rc=rc)
    assert snapshot(tmp_path) == before
    rc = main(["train", *TINY, "--epochs", "0", "--out", str(tmp_path / "new")])
    one_line(capsys, "--epochs 0", rc=rc)
    assert not (tmp_path / "new").exists()  # nothing written, the folder it made removed again


def test_an_interrupted_runs_position_is_kept_without_resume(tmp_path, capsys, no_work):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "layerwise.checkpoint/1", "epoch": 2, "step": 5}, path)
    before = path.read_bytes()
    rc = main(["train", *TINY, "--epochs", "3", "--out", str(tmp_path)])
    one_line(capsys, "--resume to continue", rc=rc)
    assert path.read_bytes() == before


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys, no_work):
    fake_checkpoint(tmp_path)
    rc = main(["train", *TINY, "--resume", "--overwrite", "--out", str(tmp_path)])
    one_line(capsys, "--resume and --overwrite", rc=rc)


def test_ela_refuses_a_folder_with_checkpoints_and_takes_overwrite(tmp_path, capsys, no_work, monkeypatch):
    import layerwise.experiments.ela_run as ela_run
    fake_checkpoint(tmp_path, "seed0/ela/checkpoint.pt")
    before = snapshot(tmp_path)
    argv = ["ela", "--model", "resnet20", "--dataset", "digits", "--out", str(tmp_path)]
    rc = main(argv)
    one_line(capsys, "already holds", "seed0/ela/checkpoint.pt", "--overwrite", rc=rc)
    assert snapshot(tmp_path) == before
    ran = []
    monkeypatch.setattr(ela_run, "run_command", lambda args, progress=None: ran.append(args.overwrite)
                        or common.CommandReport("ok"))
    assert main([*argv, "--overwrite"]) == 0 and ran == [True]


def test_train_overwrite_replaces_the_checkpoint(tmp_path, capsys):
    fake_checkpoint(tmp_path)
    rc = main(["train", *TINY, "--size", "28", "--epochs", "1", "--batch-size", "64", "--overwrite",
               "--threads", "1", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert (tmp_path / "results.json").is_file()


# --------------------------------------------------------------------------- 4. leftover temporary files

def test_leftover_tmp_files_are_removed_when_the_next_run_starts(tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="layerwise.storage")
    leftovers = [tmp_path / ".checkpoint.pt.a1b2c3d4.tmp", tmp_path / "base" / ".results.json.zz_9x8y7.tmp",
                 tmp_path / "seed0" / "ela" / ".checkpoint.pt.qwertyui.tmp"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a checkpoint")
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / "checkpoint.pt",
            tmp_path / ".git" / ".index.abcdefgh.tmp"]
    for p in kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"mine")
    rc = main(["train", *TINY, "--epochs", "0", "--resume", "--out", str(tmp_path)])
    assert rc == 2  # "mine" is no checkpoint; the folder was prepared (and cleaned) before that
    assert "leftover temporary" in caplog.text
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_bytes() == b"mine" for p in kept)
    assert "removed 3" in caplog.text


# --------------------------------------------------------------------------- 5. the CLI boundary

def _raising(exc):
    def command(args, progress=None):
        raise exc
    return command


@pytest.mark.parametrize("exc, words", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.npz"), ["permission denied", "/data/x.npz"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/d"), ["is a directory", "/data/d"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/f/x"), ["not a directory", "/data/f/x"]),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/y"), ["no such file", "/data/y"]),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/r.json"), ["read-only", "/mnt/ro/r.json"]),
    (OSError(errno.ENOSPC, "No space left on device", "/d/results.json"), ["no space left", "free some space"]),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["not UTF-8"]),
    (json.JSONDecodeError("Expecting value", "x", 0), ["not valid JSON"]),
    (MemoryError(), ["out of memory", "--size"]),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 38800000000 bytes."), ["out of memory"]),
])
def test_expected_failures_are_exit_2_and_one_line(monkeypatch, capsys, exc, words):
    monkeypatch.setattr(cli, "_cmd_list", _raising(exc))
    rc = main(["list"])
    one_line(capsys, "layerwise: error: ", *words, rc=rc)


def test_a_bug_is_exit_1_one_line_that_says_how_to_report_it(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_list", _raising(TypeError("unsupported operand")))
    rc = main(["list"])
    line = one_line(capsys, "bug", "report it with the command you ran", "--debug", "TypeError", code=1, rc=rc)
    assert line.startswith("layerwise: internal error")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback(monkeypatch, capsys, where):
    monkeypatch.setattr(cli, "_cmd_list", _raising(TypeError("unsupported operand")))
    rc = main(["--debug", "list"] if where == "before" else ["list", "--debug"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback (most recent call last)" in err and "TypeError: unsupported operand" in err


def test_empty_message_exception_is_still_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_list", _raising(EOFError()))
    one_line(capsys, "EOFError", "bug", code=1, rc=main(["list"]))


def test_usage_error_is_one_line(capsys):
    rc = main(["train", *TINY, "--epochs", "many"])
    one_line(capsys, "--epochs", "invalid int value", "--help", rc=rc)


def test_disk_full_while_writing_results_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    old = write_results(tmp_path, _results(0.5)).read_bytes()
    import layerwise.storage as storage

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(storage.os, "fsync", full)
    rc = main(["report", str(tmp_path), "--out", str(tmp_path / "report.html")])
    one_line(capsys, "No space left on device", "free some space", rc=rc)
    assert (tmp_path / "results.json").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no half file, no tmp file


# --------------------------------------------------------------------------- 6. report

def _results(acc):
    v = Variant(name="dense", accuracy=acc, macs=100, macs_executed=100, params=10, size_bytes=40,
                latency_ms={"median": 1.0, "iqr": 0.1, "n": 5, "batch": 1}, peak_mem_bytes=1000,
                energy_j={"value": 0.5, "source": "estimate:cpu", "estimated": True})
    return Results("profile", "tiny-cnn", "digits", env_info("cpu", 1, 0), [v])


def _doc_with(change):
    doc = _results(0.9).to_dict()
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("content, words", [
    (_doc_with(lambda d: d["variants"][0]["latency_ms"].update(n="many")), ["n and batch"]),
    (b"3", ["JSON object", "number"]),
    (b"[]", ["JSON object", "list"]),
    (b'{"schema": "layerwise.results/1", "caf\xe9": 1}', ["not UTF-8"]),
    (_doc_with(lambda d: d["variants"][0]["energy_j"].update(value="lots")), ["energy_j.value"]),
])
def test_report_on_a_broken_results_file_names_it(tmp_path, capsys, content, words):
    d = tmp_path / "run"
    d.mkdir()
    (d / "results.json").write_bytes(content)
    page = tmp_path / "report.html"
    page.write_text("old page")
    rc = main(["report", str(d), "--out", str(page)])
    one_line(capsys, str(d / "results.json"), *words, rc=rc)
    assert page.read_text() == "old page"


def test_report_out_that_is_a_folder_writes_report_html_inside(tmp_path, capsys):
    write_results(tmp_path / "run", _results(0.9))
    out = tmp_path / "pages"
    out.mkdir()
    assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    capsys.readouterr()
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["report"].format_help()  # noqa: SLF001
    assert "report.html" in " ".join(help_text.split()) and "folder" in help_text


def test_report_out_that_is_a_special_file_or_under_a_file(tmp_path, capsys):
    # a FIFO in tmp_path stands for /dev/null & co: the old code renamed its page over the special
    # file (as root, a real /dev/null became a regular file), so never point this test at /dev
    write_results(tmp_path / "run", _results(0.9))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    rc = main(["report", str(tmp_path / "run"), "--out", str(fifo)])
    one_line(capsys, str(fifo), "not a regular file", rc=rc)
    assert fifo.is_fifo()
    (tmp_path / "f").write_text("x")
    rc = main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "f" / "r.html")])
    one_line(capsys, "which is a file", rc=rc)


# --------------------------------------------------------------------------- 7. checkpoints that do not load

@pytest.mark.parametrize("content, words", [(b"", ["empty (0 bytes)"]), (b"\x80\x02", ["EOFError", "truncated"])])
def test_profile_with_a_broken_checkpoint_is_one_line(tmp_path, capsys, content, words):
    ck = tmp_path / "bad.pt"
    ck.write_bytes(content)
    rc = main(["profile", *TINY, "--size", "28", "--checkpoint", str(ck), "--out", str(tmp_path / "p")])
    one_line(capsys, str(ck), *words, rc=rc)
    assert ck.read_bytes() == content
    with pytest.raises(CheckpointError, match="bad.pt"):
        safe_torch_load(ck)


def test_resume_on_an_empty_checkpoint_is_one_line_and_keeps_it(tmp_path, capsys, no_work):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    rc = main(["train", *TINY, "--resume", "--out", str(tmp_path)])
    one_line(capsys, "checkpoint.pt", "empty", rc=rc)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b""


# --------------------------------------------------------------------------- 8. allocation limits

@pytest.mark.parametrize("argv, words", [
    (["profile", *TINY, "--size", "3000"], ["--size 3000 exceeds the limit of 1024 pixels per side"]),
    (["profile", *TINY, "--size", "0"], ["--size must be at least 1"]),
    (["train", *TINY, "--batch-size", "100000000"], ["--batch-size 100000000 exceeds the limit"]),
    (["profile", *TINY, "--batched", "1000000"], ["--batched 1000000 exceeds the limit"]),
    (["profile", *TINY, "--threads", "100000"], ["--threads 100000 exceeds the limit"]),
])
def test_allocation_flags_are_capped_before_work(tmp_path, capsys, no_work, argv, words):
    rc = main([*argv, "--out", str(tmp_path / "o")])
    one_line(capsys, *words, rc=rc)
    assert not (tmp_path / "o").exists()


def test_train_and_val_limits_take_fixed_stratified_subsets_and_never_cut_test():
    from collections import Counter

    from layerwise.experiments.common import RunSpec, load_data_for_model

    a = load_data_for_model(RunSpec(model="tiny-cnn", dataset="digits", train_limit=200, val_limit=100))
    b = load_data_for_model(RunSpec(model="tiny-cnn", dataset="digits", train_limit=200, val_limit=100, seed=7))
    full = load_data_for_model(RunSpec(model="tiny-cnn", dataset="digits"))
    assert (len(a.train), len(a.val), len(a.test)) == (200, 100, len(full.test))
    assert a.train.indices == b.train.indices          # the same subset whatever the seed
    counts = Counter(int(a.val[i][1]) for i in range(len(a.val)))
    assert max(counts.values()) - min(counts.values()) <= 1   # stratified: 10 classes, 10 each
    assert "200 of" in a.info["train_limit"]
