"""One run at a time per output folder: a live holder refuses, a dead one is taken over, the lock
is released on every way out (return, exception, Ctrl-C)."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from layerwise import runlock
from layerwise.cli import main
from layerwise.runlock import LOCK_NAME, FolderBusyError, RunLock, pid_alive, read_lock


def _write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or runlock.hostname(), "started": time.time(), "command": "layerwise test"}
    (folder / LOCK_NAME).write_text(json.dumps(record))
    return (folder / LOCK_NAME).read_bytes()


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid no longer exists
    assert not pid_alive(proc.pid)
    return proc.pid


def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_lock_file_names_this_process_and_goes_away_on_release(tmp_path):
    with RunLock(tmp_path) as lock:
        assert lock.fresh
        info = read_lock(tmp_path)
        assert info["pid"] == os.getpid() and info["host"] == runlock.hostname()
        with RunLock(tmp_path) as inner:  # re-entrant in one process (cli, then the runner)
            assert not inner.fresh
        assert (tmp_path / LOCK_NAME).is_file()  # the outer holder still has it
    assert not (tmp_path / LOCK_NAME).exists()


def test_live_lock_of_another_process_refuses_naming_its_pid(tmp_path, sleeper):
    before = _write_lock(tmp_path, sleeper.pid)
    with pytest.raises(FolderBusyError, match=rf"pid {sleeper.pid}\b.*wait for it"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_bytes() == before  # not touched


def test_cli_refuses_a_folder_in_use_at_once(tmp_path, sleeper, capsys, monkeypatch):
    import layerwise.experiments.common as common

    def no_data(*a, **k):
        raise AssertionError("data loaded although the folder is in use")
    monkeypatch.setattr(common, "load_dataset", no_data)
    (tmp_path / "results.json").write_text("{}")
    before = _write_lock(tmp_path, sleeper.pid)
    rc = main(["train", "--model", "tiny-cnn", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path)])
    line = _one_line(capsys)
    assert rc == 2 and line.startswith("layerwise: error: ") and f"pid {sleeper.pid}" in line and "in use" in line
    assert (tmp_path / LOCK_NAME).read_bytes() == before
    assert (tmp_path / "results.json").read_text() == "{}"


def test_lock_on_another_host_is_refused_with_the_way_out(tmp_path):
    _write_lock(tmp_path, 1, host="some-other-host.example")
    with pytest.raises(FolderBusyError, match="another host.*delete"):
        RunLock(tmp_path).acquire()


def test_stale_lock_of_a_dead_process_is_taken_over_and_logged(tmp_path, dead_pid, caplog):
    _write_lock(tmp_path, dead_pid)
    with caplog.at_level("WARNING", logger="layerwise.runlock"):
        with RunLock(tmp_path):
            assert read_lock(tmp_path)["pid"] == os.getpid()
    assert f"stale lock" in caplog.text and f"pid {dead_pid}" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


def test_cli_takes_over_a_stale_lock(tmp_path, dead_pid, caplog, capsys):
    _write_lock(tmp_path, dead_pid)
    # --epochs 0 stops right after the folder is prepared: no training needed to see the takeover
    rc = main(["train", "--model", "tiny-cnn", "--dataset", "digits", "--epochs", "0", "--out", str(tmp_path)])
    assert rc == 2 and "--epochs 0" in _one_line(capsys)
    assert "stale lock" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


FLOCK_HOLDER = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
print("locked", flush=True)
time.sleep(30)
"""


def test_flock_held_by_a_live_process_refuses(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(FLOCK_HOLDER), str(tmp_path / LOCK_NAME)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=f"pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    with RunLock(tmp_path):  # the kernel dropped the flock with the process: taken over
        assert read_lock(tmp_path)["pid"] == os.getpid()


def test_folder_inside_a_folder_in_use_is_refused(tmp_path, sleeper):
    _write_lock(tmp_path, sleeper.pid)
    with pytest.raises(FolderBusyError, match=rf"inside .*pid {sleeper.pid}"):
        RunLock(tmp_path / "sub").acquire()


def test_secondary_torchrun_rank_takes_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with RunLock(tmp_path) as lock:
        assert not lock.fresh and not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("exc, code", [(RuntimeError("boom"), 1), (KeyboardInterrupt(), 130),
                                       (OSError(28, "No space left on device"), 2)])
def test_lock_is_released_on_every_way_out_of_the_cli(tmp_path, monkeypatch, capsys, exc, code):
    import layerwise.experiments.profile as profile
    seen = {}

    def fake(args, progress=None):
        seen["lock"] = read_lock(args.out)
        raise exc
    monkeypatch.setattr(profile, "run_command", fake)
    rc = main(["profile", "--model", "tiny-cnn", "--dataset", "digits", "--out", str(tmp_path / "o")])
    assert rc == code and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert seen["lock"]["pid"] == os.getpid()  # held while the command ran
    assert not (tmp_path / "o").exists()  # released, and the folder it created (still empty) removed
