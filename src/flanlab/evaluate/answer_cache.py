"""Answers on disk: every answered request is appended to a JSONL file keyed by (model fingerprint, request), so an
interrupted evaluation resumes where it stopped."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path


def model_fingerprint(path: str | Path | None, model=None) -> str:
    h = hashlib.sha256()
    if path is not None and Path(path).is_dir():
        for f in sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin")):
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
        return h.hexdigest()[:16]
    if model is not None:
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
    return str(path)


class DiskCache:
    def __init__(self, path: str | Path | None, writer: bool = True):
        """`writer`: this process appends answers (under data-parallel evaluation only process 0 does; the
        others read the same file at start and keep new answers in memory)."""
        self.path = Path(path) if path else None
        self.writer = writer
        self.data: dict[str, object] = {}
        self.hits = 0
        self.skipped = 0  # unreadable lines (cut by a kill) - said once, below
        if self.path and self.path.is_file():
            raw = self.path.read_bytes()
            # a record cut by a kill: the writer drops it so appends start on a fresh line
            if writer and raw and not raw.endswith(b"\n"):
                with self.path.open("r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self.data[rec["k"]] = rec["v"]
                    except (json.JSONDecodeError, KeyError, TypeError):  # a line cut by a kill: its request reruns
                        self.skipped += 1
            if self.skipped and writer:
                warnings.warn(f"{self.path}: {self.skipped} unreadable cache line(s) skipped; their requests run again",
                              stacklevel=2)
        self._fh = None

    def get(self, key: str):
        v = self.data.get(key)
        if v is not None:
            self.hits += 1
        return v

    def put_many(self, items: list[tuple[str, object]]) -> None:
        if not items:
            return
        for k, v in items:
            self.data[k] = v
        if self.path and self.writer:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            from ..utils import writing
            with writing(self.path):  # a full disk: the partial line is dropped when the run resumes
                self._fh.write("".join(json.dumps({"k": k, "v": v}) + "\n" for k, v in items))
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None
