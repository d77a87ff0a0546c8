"""Keep a long run's memory flat (glibc only; a no-op elsewhere).

A backup allocates the same few large buffers over and over — a Scan page (1 MB of JSON, several
MB decoded), a part being compressed, its upload — from several threads. glibc serves such
buffers from per-thread heaps once its adaptive mmap threshold has risen, and those heaps
fragment: resident memory then creeps up with the number of pages read, i.e. with table size.
A fixed mmap threshold gives every large buffer back to the system when it is freed, and two
arenas keep the threads from each growing a heap of its own.
"""

from __future__ import annotations

import ctypes
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2

_done = False


def bound_malloc() -> bool:
    """Set glibc's mmap threshold and arena count for this process; True if it applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_ARENA_MAX, ARENA_MAX))
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    _done = ok
    return ok
