"""Large CPU tensors and glibc's allocator: keep freed memory for the next tile instead of handing
it back to the kernel.

    from mednet_pvs.inference.cpu_memory import reuse_freed_memory
    reuse_freed_memory()   # True on Linux with glibc; the CLI does this for CPU runs

glibc serves every allocation above its mmap threshold (at most 32 MiB, however it is set) with a
fresh ``mmap`` and unmaps it on ``free``. A network's activations on a 64^3 tile are larger than
that (MedNeXt-L k5: 96 channels x 2 tiles x 64^3 x 4 B = 201 MB), so every forward pass faults
every page of them in again, and the kernel zeroes each one. ``mallopt(M_MMAP_MAX, 0)`` serves
them from the heap instead, and ``M_TRIM_THRESHOLD`` keeps what is freed (up to 1 GiB free at the
heap's top) for the next tile.

Measured (2-core Xeon, AVX-512; ``benchmarks/results/cpu_backends_malloc_cpu2.txt`` and
``cpu_backends_inductor_rounds_cpu2.txt``): MedNeXt-L k5 as an AOTInductor package, one batch of
2 x 64^3: 8.6 s user + 2.4-3.1 s system and 0.8-1.1 M minor page faults per call with glibc's
defaults; 4.6 s user, 0.0 s system and no faults from the third call on with this setting. Over 4
tiles of 64^3 (medians of 3 interleaved rounds, CPU s, glibc's defaults -> this setting): MONAI's
``sliding_window_inference`` 49.0 -> 26.7 s for L k5, 7.7 -> 2.8 s for S k3, 17.1 -> 12.1 s for
ResEnc-M; ``predict``'s torch path 31.3 -> 16.8, 5.0 -> 2.2 and 17.1 -> 12.4 s.

The setting is process-wide and lasts until the process ends; memory freed by the process stays
mapped to it (its peak resident size is unchanged, but it is not returned early). Results are the
same bits: only where memory comes from changes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: bytes free at the heap's top before glibc returns them to the kernel
TRIM_THRESHOLD = 1 << 30

_state: dict[str, bool] = {}


def reuse_freed_memory(trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve large allocations from glibc's heap and keep freed memory for reuse (see the module
    docstring). Idempotent; returns whether the setting is in force (``False`` where the C library
    is not glibc: macOS, Windows, musl)."""
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
        except (OSError, AttributeError):
            applied = False
    _state["applied"] = applied
    return applied
