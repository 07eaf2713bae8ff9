"""Decoded arrays of a file-backed dataset, cached on disk: decode once, load in seconds after.

Where: ``$LAYERWISE_CACHE`` if set, else ``$XDG_CACHE_HOME/layerwise`` (``~/.cache/layerwise``),
one folder per dataset and source folder (``<dataset>-<hash of the resolved source path>``).
A folder that cannot be written only costs the cache: the data are decoded and used anyway.

What is stored: one ``.npy`` file per array plus ``meta.json`` with

* ``fingerprint``: SHA-256 over the relative path, size and modification time (ns) of every
  source file the loader read, and over the loader's parameters (e.g. the MFCC settings). A file
  added, removed, replaced or edited changes it, and the cache is rebuilt; reading the directory
  metadata costs far less than decoding (Tiny ImageNet: 110,000 ``stat`` calls vs 110,000 JPEG
  decodes). Content edits that keep both size and mtime are not detected (as ``make``).
* ``arrays``: the SHA-256, shape and dtype of each ``.npy`` file, checked on every load; a
  truncated or altered cache file is logged and rebuilt, never used.

Files are written under temporary names and renamed into place, ``meta.json`` last, so an
interrupted write leaves no cache that passes the checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
_CHUNK = 1 << 22


def cache_root() -> Path:
    env = os.environ.get("LAYERWISE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "layerwise"


def source_fingerprint(root: Path, files: list[Path], params: dict) -> str:
    """SHA-256 over each file's path relative to ``root``, size and mtime, and over ``params``."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "params": params}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class ArrayCache:
    """The cache folder of one dataset read from one source folder."""

    def __init__(self, dataset: str, source: Path):
        digest = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:16]
        self.folder = cache_root() / f"{dataset}-{digest}"

    def load(self, fingerprint: str) -> dict[str, np.ndarray] | None:
        """The cached arrays if they were built from the same sources and pass their checksums."""
        meta_path = self.folder / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("fingerprint") != fingerprint:
            log.info("%s: the source files changed since the cache was built: rebuilding", self.folder)
            return None
        out = {}
        try:
            for key, entry in meta["arrays"].items():
                path = self.folder / f"{key}.npy"
                if file_sha256(path) != entry["sha256"]:
                    log.warning("%s: checksum mismatch (damaged cache file): rebuilding", path)
                    return None
                arr = np.load(path, allow_pickle=False)
                if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
                    log.warning("%s: shape or dtype differs from meta.json: rebuilding", path)
                    return None
                out[key] = arr
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable cache (%s): rebuilding", self.folder, exc)
            return None
        log.info("loaded %s from the cache %s", ", ".join(out), self.folder)
        return out

    def store(self, fingerprint: str, arrays: dict[str, np.ndarray], describe: dict | None = None) -> bool:
        """Write ``arrays``; False (and a log line) if the cache folder cannot be written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "meta.json").unlink(missing_ok=True)  # invalid until complete
            entries = {}
            for key, arr in arrays.items():
                path = self.folder / f"{key}.npy"
                tmp = path.with_name(f".{path.name}.tmp")
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
                os.replace(tmp, path)
                entries[key] = {"sha256": file_sha256(path), "shape": list(arr.shape), "dtype": str(arr.dtype)}
            meta = {"format": FORMAT, "fingerprint": fingerprint, "arrays": entries, **(describe or {})}
            tmp = self.folder / ".meta.json.tmp"
            tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
            os.replace(tmp, self.folder / "meta.json")
        except OSError as exc:
            log.warning("cannot write the dataset cache %s (%s): continuing without it; set "
                        "LAYERWISE_CACHE to a writable folder to keep decoded data", self.folder, exc)
            return False
        log.info("cached %s in %s", ", ".join(arrays), self.folder)
        return True
