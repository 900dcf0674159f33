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
