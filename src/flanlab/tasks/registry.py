"""The task registry: built-in synthetic suite + task files (YAML) + BIG-bench tasks."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ..config import StrictModel, did_you_mean, read_yaml, validate
from ..errors import FlanlabError
from ..utils import resolve_path
from .model import Dataset, Task, TaskCategory, Template
from .synthetic import DEFAULT_HELD_OUT_CATEGORIES, build_synthetic_tasks

GENERIC_TEMPLATES = (Template("{question}"), Template("Question: {question}\nAnswer:"),
                     Template("{question}\n\nWhat is the answer?"))


class SourceSpec(StrictModel):
    type: Literal["jsonl", "csv", "tsv", "parquet", "cot_tsv", "hf", "bigbench", "rendered", "niv2", "flan_collection"]
    path: str | None = None
    splits: dict[str, str] | None = None
    fields: dict[str, str] = Field(default_factory=lambda: {"question": "question", "answer": "answer"})
    hf_path: str | None = None
    hf_name: str | None = None
    hf_split_map: dict[str, str] | None = None
    data_files: dict[str, str] | str | None = None
    bigbench_task: str | None = None
    bigbench_root: str | None = None
    # rendered (prompt/completion rows): one task per value of task_column (coarsened to the longest matching
    # name prefix if task_prefixes is given), rows kept only where every `where` column has one of its values
    task_column: str | None = None
    task_prefixes: list[str] | None = None
    where: dict[str, str | list[str]] | None = None
    # niv2 (task metadata, one line per task): only the tasks on this Flan 2022 task list's NIV2 rows count
    task_list: str | None = None
    # flan_collection (the Flan 2022 export, streamed): a Hub repo (hf_path) at this revision, or local parquet (path)
    revision: str = "main"


RENDERED_FIELDS = {"prompt": "prompt", "answer": "completion"}


class TemplateSpec(StrictModel):
    input: str
    target: str = "{answer}"


class TaskSpec(StrictModel):
    dataset: str
    category: str
    name: str | None = None
    collection: str = "custom"
    held_out: bool = False
    benchmark_source: bool = False  # the task's rows are a benchmark's: listed, never trained on
    RENAMED: ClassVar[dict[str, str]] = {"benchmark": "benchmark_source"}
    answer_type: Literal["text", "choice", "number"] = "text"
    source: SourceSpec
    templates: list[TemplateSpec] = Field(default_factory=list)


class TaskFile(StrictModel):
    tasks: list[TaskSpec]


def _build_source(spec: SourceSpec, base: Path, file: Path, idx: int, label: str):
    from .sources import BigBenchSource, CotTsvSource, FileSource, HFSource
    where = f"tasks[{idx}].source"

    def rel(p: str) -> Path:
        return resolve_path(p, base)
    if spec.type in ("jsonl", "csv", "tsv", "parquet"):
        if not spec.path and not spec.splits:
            raise FlanlabError("needs 'path' or 'splits'", file=file, field=f"{where}.path")
        try:
            return FileSource(spec.fields, path=rel(spec.path) if spec.path else None,
                              split_paths={k: rel(v) for k, v in spec.splits.items()} if spec.splits else None,
                              fmt=spec.type, name=label)
        except FlanlabError as e:
            if e.field and e.field.startswith("source"):  # a mapping problem: name the task file and the data file
                raise FlanlabError(f"{e.file}: {e.message}", file=file, field=f"tasks[{idx}].{e.field}") from None
            raise
    if spec.type == "cot_tsv":
        if not spec.path:
            raise FlanlabError("needs 'path'", file=file, field=f"{where}.path")
        return CotTsvSource(rel(spec.path), name=label)
    if spec.type == "hf":
        if not spec.hf_path:
            raise FlanlabError("needs 'hf_path'", file=file, field=f"{where}.hf_path")
        df = spec.data_files
        if isinstance(df, dict):
            df = {k: str(rel(v)) for k, v in df.items()}
        elif isinstance(df, str):
            df = str(rel(df))
        return HFSource(spec.hf_path, spec.fields, name=spec.hf_name, split_map=spec.hf_split_map, data_files=df,
                        label=label)
    if spec.type == "bigbench":
        if not spec.bigbench_task:
            raise FlanlabError("needs 'bigbench_task'", file=file, field=f"{where}.bigbench_task")
        return BigBenchSource(spec.bigbench_task, rel(spec.bigbench_root) if spec.bigbench_root else None)
    raise AssertionError(spec.type)


def _rendered_tasks(spec: TaskSpec, base: Path, file: Path, idx: int) -> list[Task]:
    from .sources.rendered import read_rendered_rows, rendered_tasks
    src, where = spec.source, f"tasks[{idx}].source"
    if not src.path and not src.hf_path:
        raise FlanlabError("needs 'path' (a local file or directory) or 'hf_path' (hub name)", file=file,
                           field=f"{where}.path")
    fields = {**RENDERED_FIELDS, **(src.fields if "fields" in src.model_fields_set else {})}
    unknown = set(fields) - set(RENDERED_FIELDS)
    if unknown:
        raise FlanlabError(f"rendered rows map only 'prompt' and 'answer', not {sorted(unknown)}", file=file,
                           field=f"{where}.fields")
    path = resolve_path(src.path, base) if src.path else None
    hub = src.hf_path
    if hub and not path and resolve_path(hub, base).is_dir():  # a local copy in the hub layout
        hub = str(resolve_path(hub, base))
    data = read_rendered_rows(path, hub, src.data_files)
    return rendered_tasks(data, prompt_col=fields["prompt"], answer_col=fields["answer"], task_column=src.task_column,
                          task_prefixes=src.task_prefixes, where=src.where, dataset=spec.dataset,
                          category=spec.category, collection=spec.collection,
                          file=path or src.hf_path, field=where)


def _niv2_tasks(spec: TaskSpec, base: Path, file: Path, idx: int) -> list[Task]:
    from .flan_list import read_flan_task_list
    from .sources.niv2 import niv2_tasks
    src = spec.source
    if not src.path:
        raise FlanlabError("needs 'path' (the NIV2 task metadata, one JSON line per task)", file=file,
                           field=f"tasks[{idx}].source.path")
    flan_list = read_flan_task_list(str(resolve_path(src.task_list, base))).names("niv2") if src.task_list else None
    return niv2_tasks(resolve_path(src.path, base), flan_list=flan_list, category=spec.category,
                      collection=spec.collection)


def _collection_tasks(spec: TaskSpec, base: Path, file: Path, idx: int) -> list[Task]:
    from .sources.flan_collection import collection_tasks
    src, where = spec.source, f"tasks[{idx}].source"
    if src.path:
        p = resolve_path(src.path, base)
        files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        if not p.exists() or not files:
            raise FlanlabError("no parquet files here", file=p, field=f"{where}.path")
        origin = {"source": "path", "path": str(p)}
    elif src.hf_path:
        from ..data import hub
        from ..data.catalog import COLLECTION_FILES, FLAN2022_REPOS
        known = src.hf_path in {repo for repo, _ in FLAN2022_REPOS.values()}  # `flanlab data fetch flan2022` gets it
        try:
            snap = hub.fetch(src.hf_path, [COLLECTION_FILES], [(COLLECTION_FILES,)], revision=src.revision,
                             name="flan2022" if known else None)
        except FlanlabError as e:
            raise FlanlabError(e.message, file=file, field=f"{where}.hf_path") from None
        files = sorted(snap.path.glob(COLLECTION_FILES))
        origin = {"source": "hub", "repo": snap.repo, "revision": snap.revision, "commit": snap.commit}
    else:
        raise FlanlabError("needs 'hf_path' (a Hub repo of the Flan collection export) or 'path' (parquet files)",
                           file=file, field=f"{where}.hf_path")
    tasks = collection_tasks(files, label=spec.dataset, category=spec.category, collection=spec.collection)
    if tasks:
        tasks[0].dataset.source.submix.origin = origin
    return tasks


def load_task_file(path: str | Path) -> list[Task]:
    path = Path(path)
    tf = validate(TaskFile, read_yaml(path), file=path)
    tasks = []
    for i, spec in enumerate(tf.tasks):
        if spec.source.type in ("rendered", "niv2", "flan_collection"):
            if spec.templates:
                raise FlanlabError(f"{spec.source.type} tasks come with their own templates; remove `templates`",
                                   file=path, field=f"tasks[{i}].templates")
            read = {"rendered": _rendered_tasks, "niv2": _niv2_tasks, "flan_collection": _collection_tasks}
            tasks += read[spec.source.type](spec, path.parent, path, i)
            continue
        templates = tuple(Template(t.input, t.target) for t in spec.templates) or GENERIC_TEMPLATES
        name = spec.name or f"{spec.category}:{spec.dataset}"
        src = _build_source(spec.source, path.parent, path, i, name)
        probe = next((src.get(s, 0) for s in ("train", "validation", "test") if src.size(s)), None)
        if probe is not None:
            for j, t in enumerate(templates):
                missing = t.fields() - set(probe.fields) - {"answer"} - ({"rationale"} if probe.rationale else set())
                if missing:
                    raise FlanlabError(f"template uses {sorted(missing)} but examples only have fields "
                                       f"{sorted(probe.fields)} (map them under source.fields)",
                                       file=path, field=f"tasks[{i}].templates[{j}]")
        category = TaskCategory(spec.category, templates, answer_type=spec.answer_type)
        tasks.append(Task(Dataset(spec.dataset, src), category, collection=spec.collection, held_out=spec.held_out,
                          benchmark_source=spec.benchmark_source, name_override=spec.name))
    return tasks


class TaskRegistry:
    def __init__(self, tasks: list[Task] | None = None):
        self._tasks: dict[str, Task] = {}
        for t in tasks or []:
            self.add(t)

    @classmethod
    def default(cls, held_out_categories=DEFAULT_HELD_OUT_CATEGORIES, task_files=(), bigbench_tasks=(),
                bigbench_root=None, seed: int = 0) -> "TaskRegistry":
        reg = cls(build_synthetic_tasks(tuple(held_out_categories), seed=seed))
        for f in task_files:
            for t in load_task_file(f):
                reg.add(t, file=f)
        if bigbench_tasks:
            from .sources.bigbench import bigbench_task, list_bigbench_tasks, missing_task_hint
            avail = list_bigbench_tasks(str(bigbench_root) if bigbench_root else None)
            for pat in bigbench_tasks:
                # a parent name matches all its subtasks
                hits = [n for n in avail if fnmatch.fnmatch(n, pat) or n.startswith(pat + "/")]
                if not hits:
                    raise FlanlabError(f"no BIG-bench task matches '{pat}'{missing_task_hint(bigbench_root)}",
                                       field="bigbench_tasks")
                for n in hits:
                    reg.add(bigbench_task(n, bigbench_root, held_out=False))
        return reg

    def add(self, task: Task, file=None) -> None:
        if task.name in self._tasks:
            raise FlanlabError(f"duplicate task name '{task.name}'", file=file, field="name")
        self._tasks[task.name] = task

    def __getitem__(self, name: str) -> Task:
        if name not in self._tasks:
            hint = did_you_mean(name, self._tasks, n=3, cutoff=0.5, otherwise=" (flanlab tasks list shows them all)")
            raise FlanlabError(f"unknown task '{name}'{hint}", field="task")
        return self._tasks[name]

    def __contains__(self, name: str) -> bool:
        return name in self._tasks

    def __iter__(self):
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def select(self, patterns: list[str]) -> list[Task]:
        """Glob patterns over task names, categories ('category:*') and collections ('@synthetic')."""
        out, seen = [], set()
        for pat in patterns:
            if pat.startswith("@"):
                hits = [t for t in self if t.collection == pat[1:]]
            else:
                hits = [t for t in self if fnmatch.fnmatch(t.name, pat)]
            for t in hits:
                if t.name not in seen:
                    seen.add(t.name)
                    out.append(t)
        return out

    def held_out(self) -> list[Task]:
        return [t for t in self if t.held_out]


class RegistrySpec(StrictModel):
    held_out_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_HELD_OUT_CATEGORIES))
    task_files: list[str] = Field(default_factory=list)
    bigbench_tasks: list[str] = Field(default_factory=list)
    bigbench_root: str | None = None
    seed: int = 0

    def resolved_task_files(self, base: Path | None = None) -> list[Path]:
        """The task files, with `@flan2022` = the Flan 2022 collection: the offline sources in FLANLAB_DATA when there
        is one (jobs/flan_tasks.yaml), else the Hub's export of the whole collection (jobs/flan_hub_tasks.yaml)."""
        jobs = Path(__file__).resolve().parents[1] / "jobs"
        out = []
        for f in self.task_files:
            if f == "@flan2022":
                from ..datapaths import data_root
                out.append(jobs / ("flan_tasks.yaml" if data_root() is not None else "flan_hub_tasks.yaml"))
            else:
                out.append(resolve_path(f, base))
        return out

    def build(self, base: Path | None = None, *, file: object = None, field: str = "registry") -> TaskRegistry:
        try:
            return TaskRegistry.default(self.held_out_categories, [str(f) for f in self.resolved_task_files(base)],
                                        self.bigbench_tasks,
                                        str(resolve_path(self.bigbench_root, base)) if self.bigbench_root else None,
                                        seed=self.seed)
        except FlanlabError as e:
            if e.file is None and file is not None:  # a registry field: name the config that set it
                raise FlanlabError(e.message, file=file, field=f"{field}.{e.field}" if e.field else field) from None
            raise
