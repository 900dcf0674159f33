"""Already-rendered instruction data: rows of (prompt, completion) whose template was applied upstream.

Two layouts, one reader:
- the T0 sample in ../shared/data/train/t0 (columns template, flan_group, prompt, completion);
- the Flan 2022 collection as the HF hub exports it (Open-Orca/FLAN: `<submix>_<format>_data/part.N.parquet`
  with columns inputs, targets, _task_name, ...), read with `datasets` from the hub, or from a local copy of the
  same layout.

Rows are grouped into tasks by a column (`task_column`, e.g. the template or `_task_name`), optionally coarsened
to datasets by name prefixes (`task_prefixes`: a template belongs to the longest prefix it starts with), and
filtered by column values (`where`). Each task is split 80/10/10 by content. Templates cannot be re-applied: a
task's one template is the rendered prompt itself, so few-shot prompts are rendered examples one after another, and
such tasks have no raw fields to show exemplar-only (they are left out of that format).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ...errors import FlanlabError
from ..model import Dataset, Example, ListSource, Task, TaskCategory, Template
from .files import read_parquet, read_rows, split_examples

RENDERED_TEMPLATE = Template("{prompt}")


@lru_cache(maxsize=4)
def _read_local(path: str, mtime: float) -> tuple[tuple[str, ...], tuple[dict, ...]]:
    """(columns, rows) of a parquet/jsonl file or of every such file under a directory (sorted by name)."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.suffix in (".parquet", ".jsonl")) if p.is_dir() else [p]
    if not files:
        raise FlanlabError("directory holds no .parquet or .jsonl files", file=p)
    cols: list[str] = []
    rows: list[dict] = []
    for f in files:
        if f.suffix == ".parquet":
            table = read_parquet(f)
            cols += [c for c in table.column_names if c not in cols]
            rows += table.to_pylist()
        else:
            for _, row in read_rows(f, "jsonl"):
                cols += [c for c in row if c not in cols]
                rows.append(row)
    return tuple(cols), tuple(rows)


def read_rendered_rows(path: Path | None, hf_path: str | None = None, data_files=None) -> tuple[tuple[str, ...], tuple]:
    if path is not None:
        if not path.exists():
            raise FlanlabError("data file not found", file=path)
        return _read_local(str(path), os.path.getmtime(path))
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise FlanlabError("the 'datasets' package is not installed", field="source.hf_path") from None
    try:  # a hub name (Open-Orca/FLAN) or a local directory in the same layout
        ds = datasets.load_dataset(hf_path, data_files=data_files, split="train")
    except Exception as e:
        raise FlanlabError(f"cannot load dataset: {e}", file=hf_path, field="source.hf_path") from None
    return tuple(ds.column_names), tuple(ds)


def _group_name(value: str, prefixes: list[str] | None) -> str | None:
    if not prefixes:
        return value
    hits = [p for p in prefixes if value == p or value.startswith(p + "_")]
    return max(hits, key=len) if hits else None


def rendered_tasks(rows_and_cols, *, prompt_col: str, answer_col: str, task_column: str | None,
                   task_prefixes: list[str] | None, where: dict | None, dataset: str, category: str,
                   collection: str, file: object, field: str) -> list[Task]:
    cols, rows = rows_and_cols
    for key, col in (("prompt", prompt_col), ("answer", answer_col)):
        if col not in cols:
            raise FlanlabError(f"column '{col}' (mapped to '{key}') is not in the data; columns: {list(cols)}",
                               file=file, field=f"{field}.fields.{key}")
    for col in [task_column, *(where or {})]:
        if col is not None and col not in cols:
            raise FlanlabError(f"column '{col}' is not in the data; columns: {list(cols)}", file=file,
                               field=f"{field}.task_column" if col == task_column else f"{field}.where")
    wanted = {k: set(v) if isinstance(v, list) else {v} for k, v in (where or {}).items()}
    groups: dict[str, list[Example]] = {}
    for n, row in enumerate(rows, 1):
        if any(row.get(k) not in v for k, v in wanted.items()):
            continue
        group = _group_name(str(row[task_column]), task_prefixes) if task_column else dataset
        if group is None:
            continue
        prompt, answer = row[prompt_col], row[answer_col]
        if prompt is None or answer is None:
            raise FlanlabError(f"row {n} has no value in '{prompt_col if prompt is None else answer_col}'",
                               file=file, field=field)
        groups.setdefault(group, []).append(Example(id=f"{dataset}/{group}/{n}", fields={"prompt": str(prompt)},
                                                    answer=str(answer)))
    if not groups:
        raise FlanlabError("no rows left after the `where` filter and `task_prefixes`", file=file, field=field)
    tasks = []
    for group, examples in groups.items():
        name = f"{category}:{group}" if task_column else f"{category}:{dataset}"
        src = ListSource(split_examples(examples))
        tasks.append(Task(Dataset(group if task_column else dataset, src), TaskCategory(category, (RENDERED_TEMPLATE,)),
                          collection=collection, name_override=name, raw_fields=()))
    return tasks
