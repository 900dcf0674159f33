"""JSONL / CSV / Parquet / Flan CoT TSV sources with a field mapping."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable, Iterator

from ...errors import FlanlabError
from ...utils import read_text
from ..model import SPLITS, Example, ListSource, content_key, hash_split



def read_parquet(path: Path):
    """The file as a pyarrow Table (its schema names the columns even when it has no rows)."""
    import pyarrow.parquet as pq
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises several types
        raise FlanlabError(f"cannot read Parquet: {e}", file=path) from None


def read_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file; a byte that is not UTF-8 is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise FlanlabError("data file not found", file=path)
    lines = read_text(path).split("\n")  # not splitlines(): JSON strings may hold U+2028 and other separators
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        yield n, line.removesuffix("\r")


def read_json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) of a JSONL file; blank lines skipped; a line that is not a JSON object is an
    error naming it."""
    for n, line in read_text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FlanlabError(f"line {n} is not valid JSON: {e.msg}", file=path) from None
        if not isinstance(row, dict):
            raise FlanlabError(f"line {n} is not a JSON object", file=path)
        yield n, row


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, dict]]:
    """Yields (row number, row dict). Row numbers are 1-based lines for JSONL/CSV."""
    path = Path(path)
    if not path.is_file():
        raise FlanlabError("data file not found", file=path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt in ("jsonl", "json"):
        yield from read_json_lines(path)
    elif fmt in ("csv", "tsv"):
        f = io.StringIO(read_text(path), newline="")
        for n, row in enumerate(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","), 2):
            yield n, row
    elif fmt == "parquet":
        for n, row in enumerate(read_parquet(path).to_pylist(), 1):
            yield n, row
    else:
        raise FlanlabError(f"unknown data format '{fmt}' (jsonl, csv, tsv, parquet)", file=path, field="format")


def read_tsv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a header-less, unquoted TSV whose lines hold exactly `columns`; blank lines skipped."""
    for n, line in read_text_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != len(columns):
            raise FlanlabError(f"line {n} has {len(cols)} tab-separated columns, expected {len(columns)} "
                               f"({', '.join(columns)})", file=path)
        yield n, cols


def rows_to_examples(rows: Iterable[tuple[int, dict]], mapping: dict[str, str], *, file: object,
                     prefix: str) -> list[Example]:
    """mapping: example field -> column. 'answer' is required; 'options' and 'rationale' optional;
    every other key becomes a template field."""
    if "answer" not in mapping:
        raise FlanlabError("field mapping must name the column holding the answer", file=file,
                           field="source.fields.answer")
    out = []
    for n, row in rows:
        vals = {}
        for key, col in mapping.items():
            if col not in row or row[col] is None:
                raise FlanlabError(f"row {n} has no column '{col}' (mapped to '{key}'); columns: {sorted(row)}",
                                   file=file, field=f"source.fields.{key}")
            vals[key] = row[col]
        opts = vals.pop("options", None)
        if opts is not None:
            if isinstance(opts, str):
                opts = [o.strip() for o in opts.split("|")]
            opts = tuple(str(o) for o in opts)
        answer = vals.pop("answer")
        if isinstance(answer, list):
            answer = answer[0] if answer else ""
        rationale = vals.pop("rationale", None)
        out.append(Example(id=f"{prefix}/{n}", fields={k: str(v) for k, v in vals.items()}, answer=str(answer),
                           options=opts, rationale=str(rationale) if rationale is not None else None))
    return out


def split_examples(examples: list[Example]) -> dict[str, list[Example]]:
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        splits[hash_split(content_key(ex) if ex.text_key() else ex.id)].append(ex)  # a repeated item: one split
    return splits


def _nonempty(examples: list[Example], path) -> list[Example]:
    if not examples:
        raise FlanlabError("data file has no rows", file=path)
    return examples


class FileSource(ListSource):
    """Either one file split deterministically by content hash (80/10/10), or one file per split."""

    def __init__(self, mapping: dict[str, str], *, path: str | Path | None = None,
                 split_paths: dict[str, str | Path] | None = None, fmt: str | None = None, name: str = "data"):
        if split_paths:
            splits = {}
            for s, p in split_paths.items():
                if s not in SPLITS:
                    raise FlanlabError(f"unknown split '{s}' (one of {SPLITS})", file=p, field="source.splits")
                splits[s] = _nonempty(rows_to_examples(read_rows(p, fmt), mapping, file=p, prefix=f"{name}/{s}"), p)
        elif path is not None:
            splits = split_examples(_nonempty(rows_to_examples(read_rows(path, fmt), mapping, file=path, prefix=name),
                                              path))
        else:
            raise FlanlabError("a file source needs 'path' or 'splits'", field="source")
        super().__init__(splits)


class CotTsvSource(ListSource):
    """Flan's CoT data files: tab-separated `question<TAB>answer<TAB>rationale`, no header. Line breaks inside a
    field are written as the two characters backslash-n (as FLAN's own reader expects); they are read as newlines."""

    def __init__(self, path: str | Path, name: str = "cot"):
        path = Path(path)
        if not path.is_file():
            raise FlanlabError("data file not found", file=path)
        exs = []
        for n, cols in read_tsv(path, ("question", "answer", "rationale")):
            q, a, r = (c.replace("\\n", "\n") for c in cols)
            if not q.strip() or not a.strip():
                raise FlanlabError(f"line {n} has an empty {'question' if not q.strip() else 'answer'}", file=path)
            exs.append(Example(id=f"{name}/{n}", fields={"question": q}, answer=a.strip(), rationale=r.strip()))
        super().__init__(split_examples(_nonempty(exs, path)))
