"""The Flan 2022 collection as the paper trained on it, read as a stream: the Data Provenance Initiative's export of
FLAN v2's five submixtures (`DataProvenanceInitiative/{flan2021,t0,niv2,cot,dialog}_submix_original` on the Hugging
Face Hub: parquet, columns inputs, targets, task_source, task_name, template_type; flan2021 alone is 5.36M rows in
two 2.7 GB files), or local parquet files in that schema.

Millions of rows never become Python objects. One pass reads the `task_name` column only, row group by row group,
and keeps per-row-group task counts (a few integers per group): task sizes, so caps and examples-proportional rates
are known before any example is read. Once the mixture has drawn which rows it needs (the k-th row of task t), a
second pass reads only the row groups holding them, one at a time, and keeps those rows. Memory is one row group
plus the drawn rows, whatever the collection's size.

The rows are rendered upstream in their format (`template_type`: zs_opt, zs_noopt, fs_opt, fs_noopt; the CoT
submixture's targets hold the rationale), so a row is written as it is and counted under the matching flanlab
format name (few-shot rows as fs_*: the export does not say how many exemplars).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import FlanlabError
from ..model import Dataset, Example, Task, TaskCategory, Template

COLUMNS = ("inputs", "targets", "task_name", "template_type")
RENDERED = Template("{prompt}")


def list_unit(task_name: str) -> str:
    """A task_name as the Flan task list spells its unit: glue/mrpc:2.0.0 -> glue_mrpc, natinst_v2_task067_x ->
    task067_x."""
    name = task_name.split(":")[0].replace("/", "_").strip()
    return re.sub(r"^(natinst_v2_|niv2_)", "", name)


def format_name(template_type: str, cot: bool) -> str:
    """flanlab's format name for an export row: zs_opt -> zs_opt_direct, fs_noopt in the CoT submixture ->
    fs_noopt_cot; a template_type outside FLAN v2's four is kept as it is."""
    m = re.search(r"(zs|fs)_?(opt|noopt)", template_type or "")
    if not m:
        return f"template_type:{template_type}"
    return f"{m.group(1)}_{m.group(2)}_{'cot' if cot or 'cot' in template_type else 'direct'}"


class SubmixFiles:
    """One submixture's parquet files: scanned once for per-row-group task counts; rows read on demand."""

    def __init__(self, files: list[Path], label: str, cot: bool = False):
        self.label, self.cot, self.files = label, cot, list(files)
        self.names: list[str] = []  # task id -> task_name
        self._ids: dict[str, int] = {}
        self.groups: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (file, row group, task ids, counts)
        self._rows: dict[tuple[int, int], tuple[str, str, str]] = {}  # (task id, rank) -> inputs, targets, type
        self.rows = 0
        self.read_groups = 0
        self.origin: dict = {"source": "path", "path": str(self.files[0].parent) if self.files else ""}
        self._scan()

    def _id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self.names)
            self.names.append(name)
        return self._ids[name]

    def _open(self, fi: int):
        """A file's reader, opened only while it is read: a reader keeps its last row group's buffers, so holding one
        per file would grow memory with the collection."""
        import pyarrow.parquet as pq
        f = self.files[fi]
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # truncated, not parquet, deleted underneath
            raise FlanlabError(f"not a readable parquet file ({type(e).__name__}: {str(e)[:160]})", file=f) from None
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise FlanlabError(f"lacks column(s) {missing} of the Flan collection export (has "
                               f"{pf.schema_arrow.names})", file=f, field=missing[0])
        return pf

    def _scan(self) -> None:
        import pyarrow.compute as pc
        for fi in range(len(self.files)):
            pf = self._open(fi)
            for rg in range(pf.num_row_groups):
                try:
                    col = pf.read_row_group(rg, columns=["task_name"]).column(0)
                except Exception as e:
                    raise FlanlabError(f"row group {rg} unreadable ({type(e).__name__}: {str(e)[:160]})",
                                       file=self.files[fi]) from None
                if col.null_count:
                    raise FlanlabError(f"row group {rg}: {col.null_count} row(s) without a task_name",
                                       file=self.files[fi], field="task_name")
                vc = pc.value_counts(col)
                ids = np.array([self._id(str(n)) for n in vc.field("values").to_pylist()], np.int32)
                counts = vc.field("counts").to_numpy().astype(np.int64)
                self.groups.append((fi, rg, ids, counts))
                self.rows += int(counts.sum())
            pf.close()

    def sizes(self) -> np.ndarray:
        out = np.zeros(len(self.names), np.int64)
        for _, _, ids, counts in self.groups:
            np.add.at(out, ids, counts)
        return out

    def prefetch(self, wanted: dict[int, np.ndarray]) -> None:
        """Read the rows `wanted` (task id -> ranks within the task, in file order) from the row groups holding
        them, one row group at a time."""
        import pyarrow as pa
        wanted = {t: np.unique(np.asarray(r, np.int64)) for t, r in wanted.items() if len(r)}
        seen = np.zeros(len(self.names), np.int64)
        pf, open_fi = None, -1
        for fi, rg, ids, counts in self.groups:
            picks = []
            for t, c in zip(ids.tolist(), counts.tolist()):
                w = wanted.get(t)
                if w is not None:
                    lo, hi = np.searchsorted(w, [seen[t], seen[t] + c])
                    if hi > lo:
                        picks.append((t, w[lo:hi] - seen[t], w[lo:hi]))
                seen[t] += c
            if not picks:
                continue
            if fi != open_fi:
                if pf is not None:
                    pf.close()
                pf, open_fi = self._open(fi), fi
            table = pf.read_row_group(rg, columns=list(COLUMNS))
            self.read_groups += 1
            enc = pa.chunked_array(table.column("task_name").chunks).combine_chunks().dictionary_encode()
            local = np.array([self._ids.get(str(n), -1) for n in enc.dictionary.to_pylist()], np.int32)
            row_ids = local[enc.indices.to_numpy(zero_copy_only=False)]
            pos, keys = [], []
            for t, local_ranks, ranks in picks:
                where = np.flatnonzero(row_ids == t)
                pos.append(where[local_ranks])
                keys += [(t, int(r)) for r in ranks]
            sub = table.take(pa.array(np.concatenate(pos)))
            for key, inp, tgt, tt in zip(keys, sub.column("inputs").to_pylist(), sub.column("targets").to_pylist(),
                                         sub.column("template_type").to_pylist()):
                if inp is None or tgt is None:
                    raise FlanlabError(f"row group {rg}: a row of task '{self.names[key[0]]}' has no "
                                       f"{'inputs' if inp is None else 'targets'}", file=self.files[fi])
                self._rows[key] = (inp, tgt, tt or "")
        if pf is not None:
            pf.close()

    def row(self, tid: int, rank: int) -> tuple[str, str, str]:
        try:
            return self._rows[(tid, rank)]
        except KeyError:
            raise RuntimeError(f"{self.label}: row {rank} of task '{self.names[tid]}' was not prefetched") from None


class StreamedRows:
    """One task of a streamed submixture: every row is training data (the export has no splits; evaluation is on
    held-out benchmarks). Rows must be prefetched (the mixer does) before `get`."""
    streamed = True

    def __init__(self, submix: SubmixFiles, tid: int, size: int):
        self.submix, self.tid, self.n = submix, tid, size

    def size(self, split: str) -> int:
        return self.n if split == "train" else 0

    def get(self, split: str, index: int) -> Example:
        inp, tgt, _ = self.submix.row(self.tid, index)
        return Example(id=f"{self.submix.label}/{self.submix.names[self.tid]}/{index}", fields={"prompt": inp},
                       answer=tgt)

    def format_name(self, index: int) -> str:
        return format_name(self.submix.row(self.tid, index)[2], self.submix.cot)


def collection_tasks(files: list[Path], *, label: str, category: str, collection: str) -> list[Task]:
    """One Task per task_name of the files, sizes from the one-column scan; no example is read here."""
    submix = SubmixFiles(files, label, cot=collection == "cot")
    sizes = submix.sizes()
    cat = TaskCategory(category, (RENDERED,))
    return [Task(Dataset(list_unit(name), StreamedRows(submix, tid, int(sizes[tid]))), cat, collection=collection,
                 name_override=f"{category}:{name}", raw_fields=())
            for tid, name in enumerate(submix.names)]


def prefetch_streamed(tasks: list[Task], ranks: list[np.ndarray]) -> None:
    """Read, one pass per submixture, the rows the mixture drew from streamed tasks (`ranks[i]` for `tasks[i]`)."""
    by_submix: dict[int, tuple[SubmixFiles, dict[int, np.ndarray]]] = {}
    for task, r in zip(tasks, ranks):
        src = task.dataset.source
        if getattr(src, "streamed", False):
            by_submix.setdefault(id(src.submix), (src.submix, {}))[1][src.tid] = r
    for submix, wanted in by_submix.values():
        submix.prefetch(wanted)
