"""Process-wide heap tuning: glibc keeps freed memory for reuse.

The CPU paths (inference's fast path, a training step) allocate and free the same
multi-megabyte buffers over and over. glibc hands allocations over its adaptive ceiling
(32 MB at most) to mmap and gives freed heap top back to the kernel, so those buffers were
faulted in afresh every time.
"""

from __future__ import annotations

import ctypes
import sys

# Measured on the 2-core dev box, 2 threads, alternating processes:
# * all five exits at 512x512 (fast path, min of 5, three runs each, with its per-run bf16
#   weight casts): bf16 419-465 -> 306-390 ms, float32 699-731 -> 532-661 ms, for a peak
#   RSS of 682-697 MB against 600-625 MB;
# * a bf16 training step (batch 32 of 64 px, min of 8, two runs each): 1,047-1,234 ->
#   887-1,005 ms.
# Maps above MMAP_THRESHOLD still go to mmap and back to the kernel.
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
_SET = False


def reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse (once per process; elsewhere a no-op)."""
    global _SET
    if _SET or not sys.platform.startswith("linux"):
        return
    _SET = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)
