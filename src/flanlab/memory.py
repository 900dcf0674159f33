"""Resident memory of this process (Linux): its peak since the last reset, so a pipeline stage reports its own peak
rather than the process's so far. The kernel keeps the peak (VmHWM in /proc/self/status) and resets it on writing
"5" to /proc/self/clear_refs. Elsewhere: getrusage's lifetime peak, and no reset."""
from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new peak from the current RSS; False where the system cannot (the peak stays the lifetime one)."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> int:
    """Peak resident set size since the last reset (or since the start), in MiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


_PINNED: dict | None = None
MMAP_THRESHOLD = 128 * 1024


def pin_allocator() -> dict:
    """glibc malloc: buffers of MMAP_THRESHOLD and more are mmapped, so freeing one gives its pages back at once, and
    the heap's free top is trimmed past that size. By default glibc raises its mmap threshold (up to 32 MiB) after the
    first large free, and the many differently sized tensors of an evaluation or a training step then stay in its
    heap as holes it cannot return: RSS climbs with the batches run (benchmarks/memory_probe/allocator.py). Called
    at a command's entry; a value the user set in MALLOC_MMAP_THRESHOLD_ wins; a no-op off glibc."""
    global _PINNED
    if _PINNED is not None:
        return _PINNED
    import os
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        _PINNED = {"malloc": f"MALLOC_MMAP_THRESHOLD_={os.environ['MALLOC_MMAP_THRESHOLD_']} set by the user"}
        return _PINNED
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, MMAP_THRESHOLD) == 1 and libc.mallopt(-1, MMAP_THRESHOLD) == 1  # M_MMAP_/M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        ok = False
    _PINNED = {"malloc": f"mmap and trim thresholds pinned at {MMAP_THRESHOLD} bytes" if ok else "system default"}
    return _PINNED
