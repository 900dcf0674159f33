"""Small shared helpers."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
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
