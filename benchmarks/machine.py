"""What a benchmark ran on, for its result file: machines differ between sessions (AMX, AVX512-BF16 or AVX2 only),
and fp32 and bf16 speed depend on it."""
from __future__ import annotations

from pathlib import Path


def cpu_description() -> str:
    """The CPU model and the flags that decide fp32 and bf16 speed, e.g. 'AMD EPYC; avx2'."""
    p = Path("/proc/cpuinfo")
    text = p.read_text(errors="replace") if p.exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "unknown")
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return f"{model}; " + " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
