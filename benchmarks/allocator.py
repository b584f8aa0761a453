"""glibc allocator settings for CPU benchmarks (never used by the library itself)."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8


def tune_host_allocator() -> bool:
    """Keeps big host buffers in glibc's heap instead of a fresh ``mmap`` per allocation.

    XLA:CPU allocates every intermediate anew; above glibc's mmap threshold (and always in the
    per-thread arenas of XLA's worker threads) each one is ``mmap``-ed and its pages faulted in
    on first touch, which on the 2-core test VM costs as much as the arithmetic (the CIFAR cnn
    training step: ~200 ms -> ~125 ms). This sets, process-wide, ``M_ARENA_MAX=1``, an mmap
    threshold of 1 GiB, no trimming and a 256 MiB top pad: the same as starting Python with
    ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647
    MALLOC_TOP_PAD_=268435456``. Call it early (before XLA starts its threads); it affects only
    the memory allocator, never results.

    Returns:
        True if glibc accepted the settings; False elsewhere (non-Linux, musl), a no-op.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = True
    for param, value in (
        (_M_ARENA_MAX, 1),
        (_M_MMAP_THRESHOLD, 1 << 30),
        (_M_TRIM_THRESHOLD, 2**31 - 1),
        (_M_TOP_PAD, 256 << 20),
    ):
        ok = bool(libc.mallopt(param, value)) and ok
    return ok
