"""Natural Instructions v2 from its task metadata, as Flan 2022 renders NIV2: the task's definition is the
instruction, an instance's input follows it, the instance's output is the target.

The offline file (`niv2_tasks.jsonl`, FLAN v2's NATINST_META_DATA) holds one line per task: `task`, `definition`,
`positive_examples` (ONE worked example: `input`, `output`, `explanation`) and `number_examples` (instances
upstream). That one example is the task's only instance here, so every NIV2 task has one training example and no
second instance to serve as a few-shot exemplar: NIV2 is zero-shot only (the mixer draws exemplars from the task's
other instances, and there are none), rather than reusing the instance as its own exemplar. Its
explanation is not used: Flan trains on NIV2's outputs, not on rationales.

Which tasks count: with a task list (Flan's `flan_collection_info.csv`), only the tasks on its NIV2 list (the others
are kept as tasks marked excluded, so the manifest counts them); tasks drawn from a benchmark of ours (MMLU, BBH's
BIG-bench tasks, GSM8K, MGSM, TyDiQA) are benchmark sources and never enter training data.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import FlanlabError
from ..model import Dataset, Example, ListSource, Task, TaskCategory, Template
from .bigbench import BBH_SOURCE_TASKS
from .files import read_json_lines

NIV2_TEMPLATES = (
    Template("{definition}\n\n{input}"),
    Template("Definition: {definition}\nInput: {input}\nOutput:"),
    Template("Task instructions: {definition}\n\nInput: {input}\nOutput:"),
    Template("{definition}\nQ: {input}\nA:"),
    Template("Read the task definition, then solve the instance that follows.\n\n{definition}\n\n{input}\nAnswer:"),
    Template("Task: {definition}\n\nSolve this instance: {input}\nSolution:"),
)
# name fragments of NIV2 tasks built from our benchmarks' data (MMLU appears as "mmmlu" in NIV2's task names)
BENCHMARK_FRAGMENTS = ("mmlu", "mmmlu", "gsm8k", "mgsm", "tydiqa", "tydi_qa", "bbh", "bigbench_hard")
NOT_IN_LIST = "not in Flan 2022's NIV2 task list"


def _benchmark_source(task_id: str) -> bool:
    name = task_id.lower()
    if any(f in name for f in BENCHMARK_FRAGMENTS):
        return True
    return "bigbench" in name and any(b in name for b in BBH_SOURCE_TASKS)


def _parse(row: dict, n: int, path: Path) -> dict:
    for key in ("task", "definition", "positive_examples"):
        if not row.get(key):
            raise FlanlabError(f"line {n} has no '{key}'", file=path, field=key)
    ex = row["positive_examples"]
    if isinstance(ex, list):  # NATINST_META_DATA keeps a dict; upstream task files keep a list
        ex = ex[0] if ex else None
    if not isinstance(ex, dict) or not str(ex.get("input", "")).strip() or "output" not in ex:
        raise FlanlabError(f"line {n}: 'positive_examples' needs an 'input' and an 'output'", file=path,
                           field="positive_examples")
    if isinstance(row["definition"], list):
        row["definition"] = row["definition"][0]
    row["positive_examples"] = ex
    return row


def niv2_tasks(path: Path, *, flan_list: tuple[str, ...] | None, category: str, collection: str) -> list[Task]:
    """One task per NIV2 task: its one worked example as the only (training) instance."""
    tasks, seen = [], set()
    on_list = set(flan_list) if flan_list is not None else None
    for n, row in read_json_lines(path):
        row = _parse(row, n, path)
        tid = str(row["task"]).strip()
        if tid in seen:
            raise FlanlabError(f"line {n}: task '{tid}' appears twice", file=path, field="task")
        seen.add(tid)
        ex = row["positive_examples"]
        out = ex["output"][0] if isinstance(ex["output"], list) else ex["output"]
        example = Example(id=f"niv2/{tid}/0", fields={"definition": str(row["definition"]).strip(),
                                                      "input": str(ex["input"]).strip()}, answer=str(out).strip())
        upstream = row.get("number_examples")
        dataset = Dataset(tid, ListSource({"train": [example]}), upstream_size=int(upstream) if upstream else None)
        tasks.append(Task(dataset, TaskCategory(category, NIV2_TEMPLATES), collection=collection,
                          benchmark_source=_benchmark_source(tid), name_override=f"{category}:{tid}", raw_fields=("input",),
                          excluded=None if on_list is None or tid in on_list else NOT_IN_LIST))
    if not tasks:
        raise FlanlabError("no NIV2 tasks in the file", file=path)
    return tasks
