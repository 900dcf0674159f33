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
