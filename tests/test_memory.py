"""Per-stage peak RSS (flanlab/memory.py): a reset forgets an earlier, larger peak."""
import sys

import pytest

from flanlab.memory import peak_rss_mb, reset_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak is reset through /proc")
def test_a_reset_peak_forgets_a_larger_earlier_one():
    assert reset_peak_rss()
    base = peak_rss_mb()
    block = bytearray(300 * 1024 * 1024)  # zero-filled by the kernel on touch: write every page
    block[::4096] = b"x" * len(block[::4096])
    high = peak_rss_mb()
    del block
    assert high >= base + 250
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 250  # the 300 MB block is gone and so is its peak


def _rss_mb() -> float:
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_mode_gives_freed_heap_pages_back(monkeypatch):
    """The evaluation's RSS climb in small: after glibc has raised its mmap threshold (a large block freed), 1 MiB
    blocks live in the heap; freed below a block still in use they stay resident until FLANLAB_MALLOC=trim's
    release_freed() gives them back."""
    import flanlab.memory as memory
    monkeypatch.setenv("FLANLAB_MALLOC", "trim")
    monkeypatch.setattr(memory, "_MODE", None)
    assert memory.choose_malloc() == {"malloc": "trim"}
    big = bytearray(8 * 1024 * 1024)
    del big  # an mmapped block freed: glibc raises its threshold above 1 MiB
    blocks = [bytearray(b"x" * (1024 * 1024)) for _ in range(300)]
    keep = bytearray(b"y" * (1024 * 1024))  # above them in the heap: its top cannot shrink past it
    held = _rss_mb()
    del blocks
    after_free = _rss_mb()
    memory.release_freed()
    after_trim = _rss_mb()
    assert after_free > held - 100  # freed, but still resident
    assert after_trim < after_free - 250, (held, after_free, after_trim)
    del keep
    monkeypatch.setenv("FLANLAB_MALLOC", "bogus")
    with pytest.raises(Exception, match="FLANLAB_MALLOC='bogus' is not one of trim, pin, off"):
        memory.choose_malloc()
