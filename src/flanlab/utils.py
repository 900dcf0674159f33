"""Small shared helpers."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def resolve_path(path: str | Path, base: str | Path | None) -> Path:
    """`path` as written in a config: absolute, or relative to the config's directory `base` (when known)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells are str()-ed as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code_version() -> str:
    """The git commit the running flanlab source comes from ("<sha>-dirty" with uncommitted changes to it), or the
    package version outside a git checkout: results record the code that made them."""
    import subprocess
    from . import __version__
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if sha.returncode:
            return __version__
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; bytes that are not UTF-8 are an error naming the line and column."""
    from .errors import FlanlabError
    path = Path(path)
    if path.is_dir():
        raise FlanlabError("is a directory, not a file", file=path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise FlanlabError(f"line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col})",
                           file=path) from None
