"""One error type for every user-facing failure: it names the file and the field."""
from __future__ import annotations


class FlanlabError(Exception):
    def __init__(self, message: str, *, file: object | None = None, field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:  # "path/to/file.yaml: field 'a.b': message"
        parts = []
        if self.file:
            parts.append(self.file)
        if self.field:
            parts.append(f"field '{self.field}'")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message
