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
The cost: freed memory stays mapped to the process (the heap top up to ``TRIM`` bytes). A peak-memory measurement
would then miss every page a call reuses from that kept memory, so
:func:`layerwise.measure.peak_memory` runs the call inside :func:`allocator_defaults`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3

MMAP = 1 << 30   # blocks below 1 GiB come from the heap, so freeing one keeps it for the next
MMAP_OLD = 32 << 20   # glibc before 2.35 refuses an mmap threshold above 32 MiB (HEAP_MAX_SIZE / 2)
TRIM = 1 << 30   # the heap top is given back only when 1 GiB or more of it is free
PAD = 64 << 20   # each heap growth asks the OS for 64 MiB more than needed
# glibc's initial values (mallopt(3)); setting them explicitly also ends glibc's dynamic growth of
# the mmap threshold, so inside allocator_defaults every block of 128 KiB or more is a fresh mmap
DEFAULTS = ((M_MMAP_THRESHOLD, 128 << 10), (M_TRIM_THRESHOLD, 128 << 10), (M_TOP_PAD, 128 << 10))

_kept: tuple = ()      # the settings keep_freed_memory applied in this process


@functools.cache
def _glibc():
    """The C library when it is glibc (has mallopt and malloc_trim), else None; looked up once."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version")):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def _set(libc, settings) -> tuple:
    """Apply each (parameter, value); the ones glibc accepted."""
    return tuple((p, v) for p, v in settings if libc.mallopt(p, v) == 1)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when they applied, False when not (not glibc,
    or ``LAYERWISE_MALLOC=default``). Overrides ``MALLOC_*_`` environment settings of the process."""
    global _kept
    if os.environ.get("LAYERWISE_MALLOC", "").lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        log.debug("malloc: not glibc, allocator settings left as they are")
        return False
    mmap = _set(libc, ((M_MMAP_THRESHOLD, MMAP),)) or _set(libc, ((M_MMAP_THRESHOLD, MMAP_OLD),))
    _kept = mmap + _set(libc, ((M_TRIM_THRESHOLD, TRIM), (M_TOP_PAD, PAD)))
    if len(_kept) < 3:
        log.info("malloc: glibc refused some thresholds (applied: %s); freed memory is only partly kept", _kept)
    return bool(mmap) and len(_kept) == 3


@contextmanager
def allocator_defaults() -> Iterator[None]:
    """For the duration: glibc's default thresholds and the freed memory the process holds handed
    back to the OS (``malloc_trim``), so that every page the body touches is a fresh one; the kept
    settings are restored afterwards. Only the trim when :func:`keep_freed_memory` did not apply
    (memory kept by ``MALLOC_*_`` environment settings is handed back too); nothing outside glibc."""
    libc = _glibc()
    if libc is None:
        yield
        return
    if _kept:
        _set(libc, DEFAULTS)
    libc.malloc_trim(0)
    try:
        yield
    finally:
        if _kept:
            _set(libc, _kept)
