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
The cost: up to ``trim`` bytes freed by the process stay mapped to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3

MMAP = 1 << 30   # blocks below 1 GiB come from the heap, so freeing one keeps it for the next
TRIM = 1 << 30   # the heap top is given back only when 1 GiB or more of it is free
PAD = 64 << 20   # each heap growth asks the OS for 64 MiB more than needed


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when it applied, False when not (not glibc,
    or ``LAYERWISE_MALLOC=default``)."""
    if os.environ.get("LAYERWISE_MALLOC", "").lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        log.debug("malloc: not glibc, allocator settings left as they are")
        return False
    ok = all(mallopt(p, v) == 1 for p, v in ((M_MMAP_THRESHOLD, MMAP), (M_TRIM_THRESHOLD, TRIM), (M_TOP_PAD, PAD)))
    if not ok:
        log.debug("malloc: glibc refused a threshold; allocator settings partly left as they are")
    return ok
