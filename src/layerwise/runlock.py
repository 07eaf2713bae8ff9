"""One run at a time per output folder.

A run holds ``DIR/.layerwise.lock`` from start to end: a small JSON file with the pid, host, start
time and command of its holder, and an exclusive ``flock`` on it while the holder lives. A second
run on the same folder refuses at once, naming the holder's pid. A lock whose process is gone
(killed, crashed, the machine rebooted) is stale and is taken over, with a warning in the log.

- Liveness: the kernel drops the ``flock`` when its holder dies; the pid in the file is checked
  as well (``kill(pid, 0)``), so a holder on a file system without ``flock`` still counts, and a
  lock file written by hand (or by an older version) is honoured while its pid runs.
- A lock written on another host cannot be checked from here: it is refused with the way out
  (delete the file once that run is gone).
- Within one process the lock is re-entrant: the command line takes it for the whole command and
  the runner it calls may take it again.
- Under ``torchrun`` only rank 0 takes it: every rank writes into the same folder by design.
- A folder inside a folder that another live run holds is refused too (e.g. ``demo``'s steps).

Released on normal exit, on exceptions and on Ctrl-C (``with run_lock(...)``); after a SIGKILL the
lock file stays behind and is taken over by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import LayerwiseError

log = logging.getLogger(__name__)

LOCK_NAME = ".layerwise.lock"

__all__ = ["LOCK_NAME", "FolderBusyError", "RunLock", "run_lock", "read_lock", "pid_alive", "is_secondary_rank"]


class FolderBusyError(LayerwiseError):
    """Another live run holds the folder's lock."""


@dataclass
class _Held:
    fd: int
    path: Path
    count: int


_held: dict[str, _Held] = {}
_registry = threading.Lock()


def hostname() -> str:
    return socket.gethostname()


def is_secondary_rank() -> bool:
    """A rank other than 0 under ``torchrun`` (they share rank 0's folder and lock)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0
    except ValueError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie, dead but not yet reaped, does not count)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _parse(text: str) -> dict | None:
    try:
        info = json.loads(text)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info


def read_lock(folder: str | os.PathLike) -> dict | None:
    """The holder recorded in ``folder``'s lock file (``pid``, ``host``, ``started``, ``command``), or None."""
    try:
        return _parse((Path(folder) / LOCK_NAME).read_text(errors="replace"))
    except OSError:
        return None


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _describe(info: dict) -> str:
    started = info.get("started")
    when = ""
    if isinstance(started, (int, float)):
        when = ", started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return f"pid {info['pid']} on {info.get('host', '?')}{when}"


def _busy(folder: Path, info: dict, what: str) -> FolderBusyError:
    lock = folder / LOCK_NAME
    if info.get("host") not in (None, hostname()):
        return FolderBusyError(
            f"{what} {folder} is locked by a layerwise run on another host ({_describe(info)}): wait for it to "
            f"finish or choose another {what}; if that run is gone, delete {lock}")
    return FolderBusyError(
        f"{what} {folder} is in use by another layerwise run ({_describe(info)}): wait for it to finish or "
        f"choose another {what} (if pid {info['pid']} is not a layerwise run, delete {lock})")


def _live_other(info: dict | None) -> bool:
    """``info`` names a holder that is not this process and may still run."""
    if info is None:
        return False
    if info.get("host") not in (None, hostname()):
        return True  # cannot check another host's processes
    return info["pid"] != os.getpid() and pid_alive(info["pid"])


def _check_ancestors(folder: Path, real: Path, what: str) -> None:
    for parent in real.parents:
        info = read_lock(parent)
        if _live_other(info):
            raise FolderBusyError(
                f"{what} {folder} is inside {parent}, which another layerwise run is using ({_describe(info)}): "
                f"wait for it to finish or choose another {what} (if pid {info['pid']} is not a layerwise run, "
                f"delete {parent / LOCK_NAME})")


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.layerwise.lock`` (re-entrant within a process).

    ``fresh`` tells, after entering, whether this call took the lock (False: re-entered, or a
    secondary torchrun rank that takes none).
    """

    def __init__(self, folder: str | os.PathLike, *, what: str = "--out", command: str | None = None) -> None:
        self.folder = Path(folder)
        self.what = what
        self.command = command
        self.key = os.path.realpath(self.folder)
        self.fresh = False
        self._entered = False

    def acquire(self) -> "RunLock":
        if self._entered:
            raise RuntimeError("RunLock is not re-entrant per object; create a new one")
        if is_secondary_rank():
            self._entered, self.fresh = True, False
            return self
        with _registry:
            held = _held.get(self.key)
            if held is not None:
                held.count += 1
                self._entered, self.fresh = True, False
                return self
        _check_ancestors(self.folder, Path(self.key), self.what)
        fd = self._take()
        with _registry:
            _held[self.key] = _Held(fd, self.folder / LOCK_NAME, 1)
        self._entered, self.fresh = True, True
        return self

    def _take(self) -> int:
        path = self.folder / LOCK_NAME
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise LayerwiseError(f"cannot create the lock file {path} ({exc.strerror or exc}): "
                                     f"choose a {self.what} folder you can write to") from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        info = _parse(_read_fd(fd)) or {"pid": "?", "host": None}
                        raise _busy(self.folder, info, self.what) from None
                    log.debug("flock unavailable on %s (%s): relying on the pid alone", path, exc)
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    same = False
                if not same:  # the holder released (unlinked) it between our open and flock: try again
                    os.close(fd)
                    continue
                text = _read_fd(fd)
                info = _parse(text)
                if _live_other(info):
                    raise _busy(self.folder, info, self.what)
                if info is not None and info["pid"] != os.getpid():
                    log.warning("taking over the stale lock %s of %s: that process is no longer running",
                                path, _describe(info))
                elif info is None and text.strip():
                    log.warning("taking over the unreadable lock file %s", path)
                record = {"pid": os.getpid(), "host": hostname(), "started": time.time(),
                          "command": self.command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
                data = (json.dumps(record) + "\n").encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                return fd
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        raise FolderBusyError(f"could not take the lock {path}: other runs keep taking it; choose another {self.what}")

    def release(self) -> None:
        if not self._entered:
            return
        self._entered = False
        if is_secondary_rank():
            return
        with _registry:
            held = _held.get(self.key)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _held[self.key]
        try:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(held.fd), os.stat(held.path)):
                    os.unlink(held.path)
        finally:
            with contextlib.suppress(OSError):
                os.close(held.fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, *, what: str = "--out", command: str | None = None) -> Iterator[RunLock]:
    """Hold ``folder``'s run lock for the ``with`` block (see the module docstring)."""
    lock = RunLock(folder, what=what, command=command)
    with lock:
        yield lock
