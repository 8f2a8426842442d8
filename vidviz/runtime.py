"""Process-wide runtime settings that the entry points (``vidviz`` CLI, ``app.py``) apply once.

On Linux with glibc, every CPU tensor above glibc's mmap threshold is a fresh ``mmap``:
the kernel zero-fills its pages on first touch and ``free`` hands them back, so each
explanation pays page faults for buffers it had a moment ago. PyTorch's CPU tuning guide
recommends an allocator that keeps memory (jemalloc, tcmalloc); :func:`tune_allocator` gets
the same effect from glibc itself with ``mallopt``: buffers up to 32 MiB come from the heap and
are reused, and freed heap memory is kept up to 1 GiB. The README gives the measured effect
on Grad-CAM (``vidviz bench explain``; ``VIDVIZ_MALLOC_TUNING=0`` turns it off). The cost: the
process's resident memory stays near its peak instead of shrinking back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def tune_allocator() -> bool:
    """Apply the glibc settings above once per process; True when they are in effect.

    A no-op (False) off glibc, or with ``VIDVIZ_MALLOC_TUNING=0`` in the environment.
    """
    if os.environ.get("VIDVIZ_MALLOC_TUNING", "1") == "0" or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
