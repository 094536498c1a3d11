"""Keep freed memory in the process while a loop allocates and frees the same large tensors (glibc only).

glibc serves each allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and unmaps it on
``free``, so a loop that allocates and frees the same large buffers takes a page fault, and the kernel zeroes a page,
for every 4 KiB of them on every pass. LUNAR's 200 full-batch epochs over 81,000 rows allocate about 1 GB of
activations each: 290,000 page faults and a third of every epoch on the development machine (benchmarks/README.md).
Inside ``reuse_freed_memory()`` glibc takes large blocks from its heap and keeps freed ones for the next pass; on
leaving, glibc's documented defaults come back and the freed memory is handed back to the system (``malloc_trim``).
It changes where memory comes from, never a computed value. Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import threading
from collections.abc import Iterator
from typing import Any

# mallopt parameters and glibc's defaults for them (mallopt(3)); mallopt has no getter, so leaving restores these
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_FREED = 2**31 - 1  # trim threshold while inside (mallopt takes an int): keep freed heap memory

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> Any | None:
    """glibc's C library with mallopt and malloc_trim, or None on other systems."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def _set(libc: Any, mmap_max: int, trim_threshold: int) -> None:
    libc.mallopt(M_MMAP_MAX, mmap_max)
    libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Serve large allocations from glibc's heap and keep freed ones for reuse until the outermost exit."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _set(libc, 0, KEEP_FREED)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
