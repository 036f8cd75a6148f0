"""Large buffers go straight back to the operating system when freed.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so after the
first large upload, 20 MiB buffers come from per-thread malloc arenas, which keep the memory: an
API process would grow by about one large file per thread that ever handled one. A fixed
threshold keeps every block over it in its own mapping, unmapped on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024
# With the mmap threshold fixed, glibc no longer raises the trim threshold either: at its default
# (128 KiB) every free of a few hundred KiB at the top of a heap gives memory back, to be faulted
# in again by the next upload. A few MiB per heap is little to keep.
TRIM_THRESHOLD_BYTES = 4 * 1024 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold (no-op elsewhere); whether it was set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not done:
        log.warning("could not set the malloc mmap threshold; large uploads may grow memory")
    return done
