"""A GGUF file checked before transformers reads it: a truncated download, a file that is not GGUF or a tensor
that points past the end of the file is named here in one line, instead of surfacing as numpy's reshape errors."""
from __future__ import annotations

import struct
from pathlib import Path

from ..errors import FlanlabError

SUPPORTED_VERSIONS = (2, 3)  # what gguf-py (and so transformers) reads


def validate_gguf(path: Path, field: str = "model.checkpoint") -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(24)
    if head[:4] != b"GGUF" and not b"GGUF".startswith(head):
        raise FlanlabError(f"not a GGUF file (it starts with {head[:4]!r}, not b'GGUF')", file=path, field=field)
    if len(head) < 24:
        raise FlanlabError(f"truncated GGUF file ({size} bytes: shorter than the header)", file=path, field=field)
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in SUPPORTED_VERSIONS:
        raise FlanlabError(f"GGUF version {version} is not supported (supported: {SUPPORTED_VERSIONS})", file=path,
                           field=field)
    if n_tensors == 0:
        raise FlanlabError("GGUF file holds no tensors", file=path, field=field)
    try:
        from gguf import GGUFReader
    except ImportError:
        raise FlanlabError("reading GGUF files needs the gguf package: pip install gguf", file=path,
                           field=field) from None
    try:  # parses every key/value and tensor header; a file cut short fails here
        reader = GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, struct.error, OSError) as e:
        raise FlanlabError(f"truncated or corrupt GGUF file ({size} bytes; {type(e).__name__}: {e})", file=path,
                           field=field) from None
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise FlanlabError(f"truncated GGUF file: tensor {t.name!r} ends at byte {t.data_offset + t.n_bytes}, "
                               f"the file has {size}", file=path, field=field)
    if "general.architecture" not in reader.fields:
        raise FlanlabError("GGUF file has no general.architecture key", file=path, field=field)
