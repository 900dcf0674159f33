"""The Flan 2022 collection's task list (FLAN v2's `flan_collection_info.csv`): what a mixture is compared against,
name by name.

Columns: Source (FLAN, T0, FLAN/T0, NIv2, CoT, Dialog, Program Synthesis), Dataset, Specific Task Category,
Generic Task Category, Languages. The unit the paper counts differs by source: a NIV2 task is one row (its
`Specific Task Category` is the NIV2 task id, e.g. task067_abductivenli_answer_generation), a T0-SF task is one
promptsource template (one row), and Muffin, CoT and Dialog tasks are datasets (several rows each).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import FlanlabError
from ..utils import read_text

COLUMNS = ("Source", "Dataset", "Specific Task Category", "Generic Task Category", "Languages")
# which Source values make up each of FLAN v2's submixtures, and whether a task there is a row or a dataset
SUBMIXTURE_SOURCES = {"muffin": ("FLAN", "FLAN/T0", "Program Synthesis"), "t0sf": ("T0",), "niv2": ("NIv2",),
                      "cot": ("CoT",), "dialog": ("Dialog",)}
ROW_UNITS = {"t0sf", "niv2"}  # elsewhere the unit is the dataset


@dataclass(frozen=True)
class FlanTaskList:
    path: str
    tasks: dict[str, tuple[str, ...]]  # submixture -> the paper's task names, in file order

    def names(self, submixture: str) -> tuple[str, ...]:
        return self.tasks.get(submixture, ())


@lru_cache(maxsize=4)
def read_flan_task_list(path: str) -> FlanTaskList:
    p = Path(path)
    if not p.is_file():
        raise FlanlabError("Flan 2022 task list not found (FLAN v2's flan_collection_info.csv)", file=p)
    rows = list(csv.reader(io.StringIO(read_text(p), newline="")))
    if not rows or tuple(c.strip() for c in rows[0][:len(COLUMNS)]) != COLUMNS:
        raise FlanlabError(f"line 1: expected the header {', '.join(COLUMNS)}", file=p)
    sub_of = {src: sub for sub, srcs in SUBMIXTURE_SOURCES.items() for src in srcs}
    tasks: dict[str, dict[str, None]] = {s: {} for s in SUBMIXTURE_SOURCES}
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 3 or not row[1].strip():
            raise FlanlabError(f"line {n}: needs Source, Dataset and Specific Task Category", file=p)
        sub = sub_of.get(row[0].strip())
        if sub is None:
            raise FlanlabError(f"line {n}: unknown Source '{row[0]}' (one of {', '.join(sub_of)})", file=p,
                               field="Source")
        tasks[sub][row[2].strip() if sub in ROW_UNITS else row[1].strip()] = None
    return FlanTaskList(str(p), {s: tuple(v) for s, v in tasks.items()})
