"""YAML -> pydantic config loading with errors that name the file and the field."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Type, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import FlanlabError
from .utils import read_text

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    # old key -> its new name: a config still using the old key fails with "renamed to ..." (not "unknown field")
    RENAMED: ClassVar[dict[str, str]] = {}


def _loc(loc: tuple) -> str:
    """pydantic's location as one spelling of a field path: tasks[0].source."""
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "<root>"


def apply_overrides(data: Any, overrides: list[str], file: object = "<command line>") -> dict:
    """key=value overrides on a config dict; keys may be nested (model.preset=t5-5m), values are YAML
    (steps=10 is an int, lora=null clears a section)."""
    data = dict(data or {})
    for kv in overrides or []:
        shown = kv if len(kv) <= 80 else kv[:77] + "..."  # echoed back cut short: a pasted blob stays one line
        if "=" not in kv:
            raise FlanlabError(f"override '{shown}' is not key=value (e.g. steps=100 or model.preset=t5-5m)",
                               file=file)
        key, raw = kv.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise FlanlabError(f"override '{shown}': empty field name", file=file)
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise FlanlabError(f"override '{shown}': '{'.'.join(parts[:i + 1])}' is not a section", file=file,
                                   field=key)
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return data


def _model_at(model: type, loc: tuple) -> type | None:
    """The pydantic model class that holds the field at `loc` (None if the path leaves the models)."""
    cls: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list element: the element type was taken with the list's field
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        cls = _inner_model(cls.model_fields[part].annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as `X | None` or `list[X]`, else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def did_you_mean(name: str, known, *, n: int = 1, cutoff: float = 0.6, otherwise: str | None = None) -> str:
    """"; did you mean 'x'?" for the closest of `known` (up to n), else `otherwise` (default: "; known: a, b, ...")."""
    import difflib
    near = difflib.get_close_matches(str(name), list(known), n=n, cutoff=cutoff)
    if near:
        return "; did you mean " + ", ".join(f"'{x}'" for x in near) + "?"
    return otherwise if otherwise is not None else f"; known: {', '.join(sorted(map(str, known)))}"


def validate(model: Type[T], data: Any, *, file: object = "<config>", prefix: str = "") -> T:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        err = e.errors()[0]
        field = _loc(tuple(err["loc"]))
        if prefix:
            field = f"{prefix}.{field}" if field != "<root>" else prefix
        more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":  # a misspelt key: name the nearest known one
            holder, key = _model_at(model, tuple(err["loc"])[:-1]), err["loc"][-1]
            renamed = getattr(holder, "RENAMED", {}).get(key) if holder else None
            msg = (f"'{key}' was renamed to '{renamed}'" if renamed else
                   "unknown field" + (did_you_mean(key, holder.model_fields) if holder else ""))
        elif err["type"] != "missing" and isinstance(err.get("input"), (str, int, float, bool)):
            got = repr(err["input"])  # the value echoed back, cut short: a pasted blob stays one line
            msg += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
        raise FlanlabError(f"{msg}{more}", file=file, field=field) from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise FlanlabError("file not found", file=path)
    text = read_text(path)
    try:
        return expand_data_root(yaml.safe_load(text), path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FlanlabError(f"not valid YAML{where}: {getattr(e, 'problem', e)}", file=path) from None


# top-level keys of a file that holds stage sections (a run or sweep config read by one stage's command)
RUN_KEYS = ("output", "mix", "train", "eval", "baseline", "base", "num_tasks", "presets", "cot_shares", "seeds",
            "task_order_seed")


DATA_VAR = "${FLANLAB_DATA}"


def expand_data_root(data: Any, file: object) -> Any:
    """`${FLANLAB_DATA}` in a config's strings is the real-data directory (flanlab.datapaths.data_root, looked up
    once per file); a config that names it where there is none fails with how to provide one."""
    root: list[str] = []

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [expand(v) for v in node]
        if isinstance(node, str) and DATA_VAR in node:
            if not root:
                from .datapaths import data_root
                try:
                    root.append(str(data_root(required=True)))
                except FlanlabError as e:
                    raise FlanlabError(f"this config reads {DATA_VAR}: {e.message}", file=file,
                                       field=e.field) from None
            return node.replace(DATA_VAR, root[0])
        return node
    return expand(data)


def read_section(path: str | Path, name: str) -> tuple[Any, str]:
    """A config file may hold one stage's config at top level or under a section key: (data, section prefix). Beside
    a section, every other top-level key must be one a run or sweep config knows."""
    data = read_yaml(path)
    if isinstance(data, dict) and name in data:
        for key in data:
            if key not in RUN_KEYS:
                raise FlanlabError(f"unknown top-level key{did_you_mean(key, RUN_KEYS)}", file=path, field=str(key))
        return data[name], name
    return data, ""


