"""Resident memory of this process (Linux): its peak since the last reset, so a pipeline stage reports its own peak
rather than the process's so far. The kernel keeps the peak (VmHWM in /proc/self/status) and resets it on writing
"5" to /proc/self/clear_refs. Elsewhere: getrusage's lifetime peak, and no reset."""
from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from .errors import FlanlabError

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


# How freed memory goes back to the system (glibc only; FLANLAB_MALLOC chooses, for this process and the ones it
# starts): "trim" gives the heap's free pages back after every batch / training step (malloc_trim), "pin" pins glibc's
# mmap threshold at 128 KiB, "off" leaves glibc's defaults. Why: by default glibc raises its mmap threshold (up to
# 32 MiB) after the first large free, and the many differently sized tensors of an evaluation or a training step then
# stay in its heap as holes it does not return: RSS climbs with the batches run (benchmarks/memory_probe/allocator.py).
MALLOC_MODES = ("trim", "pin", "off")
_MODE: str | None = None
_LIBC = None
MMAP_THRESHOLD = 128 * 1024


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def choose_malloc() -> dict:
    """Apply FLANLAB_MALLOC (default "off") once, at a command's entry; returns what results record."""
    global _MODE
    mode = os.environ.get("FLANLAB_MALLOC", "off")
    if mode not in MALLOC_MODES:
        raise FlanlabError(f"FLANLAB_MALLOC={mode!r} is not one of {', '.join(MALLOC_MODES)}")
    libc = _libc()
    if not libc:
        mode = "off"
    elif mode == "pin":
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD; setting it also stops glibc's raising of it
        libc.mallopt(-1, MMAP_THRESHOLD)  # M_TRIM_THRESHOLD
    _MODE = mode
    return malloc_record()


def malloc_record() -> dict:
    return {"malloc": _MODE or "off"}


def release_freed() -> None:
    """After a batch or a training step: give the heap's free pages back (FLANLAB_MALLOC=trim)."""
    if _MODE == "trim":
        _libc().malloc_trim(0)
