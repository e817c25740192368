"""Sane bounds, checked before anything is allocated or started.

A hostile or mistyped number (`--threads 100000`, `--input-shape 1,99999999,9999`, a `.npy`
header declaring a TiB array, a model input of 10^12 elements) must be refused in one line with
exit 2, not crash the runtime or swap the machine to death.
"""

from __future__ import annotations

import os

import numpy as np

from edgeport.errors import InputError

MAX_RUNS = 1_000_000
MAX_WARMUP = 100_000
MAX_DIM = 1 << 31
# One input tensor (batch 1) may use at most this fraction of the memory available now.
MEMORY_FRACTION = 0.25


def max_threads() -> int:
    """Thread counts above this are refused: runtimes crash or hang creating 100,000 threads."""
    return max(16, 4 * (os.cpu_count() or 1))


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable; else physical)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_tensor(what: str, shape, dtype="float32") -> None:
    """Refuse a tensor whose dimensions are not sane or whose bytes would not fit in memory."""
    dims = [int(d) for d in shape if d is not None]
    if any(d < 0 or d > MAX_DIM for d in dims):
        raise InputError(f"{what}: shape {list(shape)} has a dimension outside 0..{MAX_DIM}")
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        itemsize = 4
    nbytes = int(np.prod(dims, dtype=object)) * itemsize if dims else itemsize
    budget = int(available_memory() * MEMORY_FRACTION)
    if nbytes > budget:
        raise InputError(f"{what}: shape {list(shape)} needs {_gib(nbytes)} for one sample, more than this "
                         f"machine can spare ({_gib(budget)})")


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.3g} GiB" if nbytes >= 1 << 20 else f"{nbytes:,} bytes"
