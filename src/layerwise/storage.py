"""Atomic writes and safe loads.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target, so a
crash or Ctrl-C leaves either the old file or the new one, never half of one. A SIGKILL (or a power
cut) in the middle of a write can leave the temporary sibling ``.NAME.XXXXXXXX.tmp`` behind:
:func:`remove_stale_tmp` deletes those when the next run takes the folder's lock. Torch files are
always loaded with ``weights_only=True``: loading never runs pickled code.

:func:`ensure_writable_dir` checks an output folder before any expensive work: it exists or can be
created, is a folder (not a file, not under a file) and a file can be written in it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, LayerwiseError

log = logging.getLogger(__name__)

# ``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``: 8 characters from this alphabet in between
TMP_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def torch_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` with ``torch.save`` into memory."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, torch_bytes(obj))


def first_line(exc: BaseException, limit: int = 200) -> str:
    """``TypeName: first line of the message`` (just the type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


def check_checkpoint_file(path: str | os.PathLike) -> Path:
    """A checkpoint path that names a non-empty readable file, or a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder: pass the path of a .pt file written by layerwise")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the path of a .pt file written by layerwise")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or first_line(exc)}): "
                              "check the path and its permissions") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes), e.g. a copy or download that did not finish: "
                              "use a checkpoint written by layerwise")
    return path


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a torch file without running pickled code; errors name the file and the fix."""
    path = check_checkpoint_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:  # permissions, I/O errors: the file may be fine
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or first_line(exc)}): "
                              "check the path and its permissions") from None
    except Exception as exc:  # truncated zip, foreign pickle, ...
        detail = first_line(exc)
        if "Weights only load failed" in str(exc):  # torch's advice (weights_only=False) would run pickled code
            detail = f"{type(exc).__name__}: not a weights-only torch file"
        raise CheckpointError(
            f"cannot load {path} as a weights-only torch file ({detail}); "
            "it is truncated, corrupted or holds pickled objects: use a checkpoint written by layerwise"
        ) from None


def remove_stale_tmp(folder: str | os.PathLike, depth: int = 4, max_entries: int = 20000) -> list[Path]:
    """Delete leftover temporary files of interrupted atomic writes in ``folder`` and its sub-folders
    down to ``depth`` levels (``demo``'s deepest: ``OUT/ela/seed0/ela/``); return what was removed.

    Only names ``atomic_write_bytes`` makes (``.NAME.XXXXXXXX.tmp``) are removed; hidden folders and
    links are not entered, and the walk stops after ``max_entries`` entries (an ``--out`` that is a
    home folder). Call it only while holding the folder's run lock (:mod:`layerwise.runlock`): the
    temporary file of a write in progress looks the same.
    """
    removed: list[Path] = []
    folders = [(Path(folder), 1)]
    seen = 0
    while folders and seen < max_entries:
        here, level = folders.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        seen += len(entries)
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if level < depth and not entry.name.startswith("."):
                        folders.append((Path(entry.path), level + 1))
                elif entry.is_file(follow_symlinks=False) and TMP_PATTERN.match(entry.name):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError as exc:
                log.warning("could not remove the leftover temporary file %s: %s", entry.path, exc)
    if removed:
        log.info("removed %d leftover temporary file(s) of an interrupted write: %s", len(removed),
                 ", ".join(str(p) for p in sorted(removed)))
    return removed


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def ensure_writable_dir(path: str | os.PathLike, what: str = "--out") -> list[Path]:
    """Make sure ``path`` is a folder a file can be written in, creating it (and its parents) if needed.

    Returns the folders it created (outermost first), so a caller that fails before writing
    anything can remove them again. Raises a one-line :class:`LayerwiseError` otherwise.
    """
    path = Path(path)
    if _exists(path):
        if not path.is_dir():
            raise LayerwiseError(f"{what} {path} is a file, not a folder: pass a folder (or move the file away)")
        missing: list[Path] = []
    else:
        missing = [path]
        for parent in path.parents:
            if _exists(parent):
                if not parent.is_dir():
                    raise LayerwiseError(f"{what} {path} is inside {parent}, which is a file, not a folder: "
                                         "pass a folder path")
                break
            missing.append(parent)
        missing.reverse()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LayerwiseError(f"cannot create the {what} folder {path} ({exc.strerror or first_line(exc)}): "
                                 "choose a folder you can write to") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".layerwise-probe.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        for created in reversed(missing):
            try:
                created.rmdir()
            except OSError:
                break
        raise LayerwiseError(f"{what} {path} is not writable ({exc.strerror or first_line(exc)}): "
                             "choose a folder you can write to") from None
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) that are empty: what a run created and never used."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break
