"""YAML -> pydantic config loading with errors that name the file and the field."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Type, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import FlanlabError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc) if loc else "<root>"


def validate(model: Type[T], data: Any, *, file: object = "<config>", prefix: str = "") -> T:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        err = e.errors()[0]
        field = _loc(tuple(err["loc"]))
        if prefix:
            field = f"{prefix}.{field}" if field != "<root>" else prefix
        more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
        raise FlanlabError(f"{err['msg']}{more}", file=file, field=field) from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FlanlabError("file not found", file=path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FlanlabError(f"not valid YAML{where}: {getattr(e, 'problem', e)}", file=path) from None


def load_config(model: Type[T], path: str | Path, *, section: str | None = None) -> T:
    data = read_yaml(path)
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise FlanlabError("missing section", file=path, field=section)
        data = data[section]
    return validate(model, data, file=path, prefix=section or "")
