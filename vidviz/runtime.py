"""Process-wide set-up in one place: the device, torch.distributed, and the CPU allocator.

* :func:`pick_device`: ``cuda`` when present (or asked for), else ``cpu``.
* :func:`init_distributed`: under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group
  once (nccl on GPUs, gloo on CPUs) and return ``(rank, world)``; ``(0, 1)`` otherwise.
* :func:`tune_allocator`: on Linux with glibc, every CPU tensor above glibc's mmap threshold
  is a fresh ``mmap``: the kernel zero-fills its pages on first touch and ``free`` hands them
  back, so each explanation pays page faults for buffers it had a moment ago. PyTorch's CPU
  tuning guide recommends an allocator that keeps memory (jemalloc, tcmalloc); this gets the
  same effect from glibc itself with ``mallopt``: buffers up to 32 MiB come from the heap and
  are reused, and freed heap memory is kept up to 1 GiB. BENCHMARKS.md gives the measured
  effect (``VIDVIZ_MALLOC_TUNING=0`` turns it off). The cost: the process's resident memory
  stays near its peak instead of shrinking back. The CLI and ``app.py`` call it once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from typing import TYPE_CHECKING

from vidviz.errors import UsageError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: app.py calls tune_allocator() before any
# page has imported torch, so that the first page can paint while torch loads.

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


def pick_device(name: str | None = None) -> torch.device:
    """``cuda`` when present (or asked for), else ``cpu``; a device that cannot be used is a :class:`UsageError`.
    On CUDA, cuDNN's TF32 convolutions are turned off, so the maps are the exact ones."""
    import torch

    if not name or name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise UsageError(f"unknown device {name!r} (use auto, cpu or cuda)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but this machine has no usable CUDA device")
    if dev.type == "cuda":  # maps in full FP32, as on a CPU: cuDNN would otherwise convolve in TF32 (10-bit mantissa)
        torch.backends.cudnn.allow_tf32 = False
    return dev


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed() -> tuple[int, int]:
    """Join torchrun's process group once (nccl on GPU, gloo on CPU); returns (rank, world size)."""
    import torch

    rank, world = dist_info()
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world


def barrier() -> None:
    """Wait for every rank (no-op outside torchrun)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


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
