"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

glibc serves a block of 128 KiB or more with its own ``mmap`` and gives it back with ``munmap``
when freed, and trims the heap top above 128 KiB (its thresholds then grow with use, up to 32 MiB).
The UnIT reference path allocates and frees tensors of tens of MB per layer call (im2col columns,
the skip masks), so every call paid fresh page faults and the kernel's page zeroing: in
``layerwise unit --quick`` on tiny-cnn / digits, single-threaded, 28 s of 58 s CPU were system time.
With the thresholds raised (``mallopt``), freed blocks are reused: 1 s of system time, 29 s in all.

:func:`keep_freed_memory` is called once by the command line before a command runs; a library
user calls it, or sets ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` themselves. It does
nothing outside glibc, and nothing when ``LAYERWISE_MALLOC=default`` (the allocator's own settings).
The cost: up to ``TRIM`` bytes freed by the process stay mapped to it. A peak-memory measurement
would then miss every page a call reuses from that kept memory, so
:func:`layerwise.measure.peak_memory` runs the call inside :func:`allocator_defaults`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3

MMAP = 1 << 30   # blocks below 1 GiB come from the heap, so freeing one keeps it for the next
TRIM = 1 << 30   # the heap top is given back only when 1 GiB or more of it is free
PAD = 64 << 20   # each heap growth asks the OS for 64 MiB more than needed
KEPT = ((M_MMAP_THRESHOLD, MMAP), (M_TRIM_THRESHOLD, TRIM), (M_TOP_PAD, PAD))
# glibc's documented defaults (mallopt(3)): 128 KiB thresholds, no top pad beyond its own
DEFAULTS = ((M_MMAP_THRESHOLD, 128 << 10), (M_TRIM_THRESHOLD, 128 << 10), (M_TOP_PAD, 128 << 10))

_kept = False   # keep_freed_memory applied in this process


def _glibc():
    """The C library when it is glibc (has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    ok = libc is not None and all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version"))
    return libc if ok else None


def _set(libc, settings) -> bool:
    return all(libc.mallopt(p, v) == 1 for p, v in settings)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when it applied, False when not (not glibc,
    or ``LAYERWISE_MALLOC=default``)."""
    global _kept
    if os.environ.get("LAYERWISE_MALLOC", "").lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        log.debug("malloc: not glibc, allocator settings left as they are")
        return False
    _kept = _set(libc, KEPT)
    if not _kept:
        log.debug("malloc: glibc refused a threshold; allocator settings partly left as they are")
    return _kept


@contextmanager
def allocator_defaults() -> Iterator[None]:
    """For the duration: glibc's default thresholds, the memory kept so far handed back to the OS
    (``malloc_trim``), so that every page the body touches is a fresh one; the kept settings are
    restored afterwards. Does nothing when :func:`keep_freed_memory` did not apply."""
    libc = _glibc() if _kept else None
    if libc is None:
        yield
        return
    _set(libc, DEFAULTS)
    libc.malloc_trim(0)
    try:
        yield
    finally:
        _set(libc, KEPT)
