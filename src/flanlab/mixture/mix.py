"""Examples-proportional mixing with per-task caps and per-collection weights.

Deterministic: the same config and seed give byte-identical shards. Held-out tasks and benchmark
sources are refused if named for training, excluded if only matched by a pattern, and a final
guard checks every written record; training examples whose content (fields + answer) equals an
evaluation example of a held-out/benchmark task are dropped (decontamination) and counted.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..errors import FlanlabError
from ..outlock import output_lock, process_alive
from ..utils import publish_dir, recover_dir, resolve_path, writing
from ..formats import Format, render_example
from ..tasks.model import Task
from ..tasks.flan_list import read_flan_task_list
from ..tasks.registry import RegistrySpec, TaskRegistry  # noqa: F401 (RegistrySpec: a mixture config's field)
from ..tasks.synthetic import DEFAULT_HELD_OUT_CATEGORIES
from .decontaminate import DecontaminationSpec, NgramIndex, build_index
from .flan2022 import FLAN_2022, coverage, unknown_submixture


class FormatMix(StrictModel):
    few_shot_prob: float = Field(0.3, ge=0, le=1)
    max_few_shot: int = Field(3, ge=1, le=16)
    options_prob: float = Field(0.5, ge=0, le=1)
    cot_share: float = Field(0.2, ge=0, le=1)
    inversion_prob: float = Field(0.05, ge=0, le=1)
    exemplar_only_prob: float = Field(0.0, ge=0, le=1)  # share of few-shot examples rendered exemplar-only


class CollectionSpec(StrictModel):
    """A submixture: tasks, a mixing weight and a per-task cap. `flan_submixture` maps it onto Flan 2022's
    (muffin, t0sf, cot, niv2, dialog): weight and cap then default to the paper's rate and cap."""
    name: str
    tasks: list[str]
    weight: float | None = Field(None, gt=0)
    cap: int | None = Field(None, gt=0)
    flan_submixture: str | None = None
    formats: FormatMix | None = None  # this collection's format mix (default: the mixture's)

    @field_validator("flan_submixture")
    @classmethod
    def _known(cls, v):
        if v is not None and v not in FLAN_2022:
            raise ValueError(unknown_submixture(v))
        return v

    @model_validator(mode="after")
    def _paper_defaults(self):
        sub = FLAN_2022.get(self.flan_submixture or "")
        if self.weight is None:
            self.weight = sub.rate if sub else 1.0
        if self.cap is None:
            self.cap = sub.cap if sub else 3000
        return self


class MixConfig(StrictModel):
    seed: int = 0
    total_examples: int = Field(20000, gt=0)
    output: str = "runs/mixture"
    shard_size: int = Field(50000, gt=0)
    shard_format: Literal["jsonl", "parquet"] = "jsonl"
    max_input_len: int | None = 1024
    decontaminate: bool = True
    # n-gram overlap with real benchmark files (13-grams); matching training examples are dropped and counted
    decontamination: DecontaminationSpec = Field(default_factory=DecontaminationSpec)
    # lengths (max_input_len, few-shot fitting) in this checkpoint's tokenizer's tokens (bytes when unset)
    tokenizer: str | None = None
    # Flan 2022's task list (FLAN v2's flan_collection_info.csv): the manifest compares the Flan submixtures with
    # it name by name (present, missing, extra)
    flan_task_list: str | None = None
    overwrite: bool = False
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    collections: list[CollectionSpec] = Field(
        default_factory=lambda: [CollectionSpec(name="synthetic", tasks=["@synthetic"])])
    formats: FormatMix = Field(default_factory=FormatMix)


def _is_glob(p: str) -> bool:
    return p.startswith("@") or any(c in p for c in "*?[")


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    s = sum(weights)
    raw = [total * w / s for w in weights]
    base = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (raw[i] - base[i], -i), reverse=True)
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def plan_mixture(cfg: MixConfig, registry: TaskRegistry, *, file: object = "<mix config>") -> dict:
    """Decide how many examples each task contributes.
    Returns {collections, tasks: [(task, n, collection)], excluded}."""
    excluded, per_coll, present = [], [], []
    for ci, coll in enumerate(cfg.collections):
        chosen = []
        for pat in coll.tasks:
            hits = registry.select([pat])
            if not hits:
                if coll.flan_submixture and _is_glob(pat):  # a submixture this source lacks (Dialog offline)
                    continue
                raise FlanlabError(f"pattern '{pat}' matches no task", file=file, field=f"collections[{ci}].tasks")
            for t in hits:
                if t.held_out or t.benchmark_source or t.excluded:
                    why = "held-out task" if t.held_out else "benchmark source" if t.benchmark_source else t.excluded
                    if not _is_glob(pat):
                        raise FlanlabError(f"'{t.name}' is a {why} and may not enter training data", file=file,
                                           field=f"collections[{ci}].tasks")
                    excluded.append({"task": t.name, "reason": why, "collection": coll.name})
                    continue
                if t.size("train") == 0:
                    excluded.append({"task": t.name, "reason": "empty train split", "collection": coll.name})
                    continue
                if t not in chosen:
                    chosen.append(t)
        if not chosen and coll.flan_submixture and not registry.select(coll.tasks):
            continue  # reported as a missing submixture; the others' rates are renormalised
        if not chosen:
            names = {t.name for t in registry.select(coll.tasks)}
            why = "; ".join(f"{e['task']}: {e['reason']}" for e in excluded if e["task"] in names)
            raise FlanlabError(f"collection '{coll.name}' has no trainable task (all excluded: {why})", file=file,
                               field=f"collections[{ci}].tasks")
        per_coll.append(chosen)
        present.append(coll)
    if not present:
        raise FlanlabError("no collection has a task", file=file, field="collections")
    coll_n = _largest_remainder(cfg.total_examples, [c.weight for c in present])
    plan = []
    for coll, chosen, n in zip(present, per_coll, coll_n):
        eff = [min(t.size("train"), coll.cap) for t in chosen]
        for t, k, e in zip(chosen, _largest_remainder(n, eff), eff):
            plan.append({"task": t, "n": k, "collection": coll.name, "effective_size": e})
    return {"tasks": plan, "excluded": excluded, "collections": present}


SHIPPED_TASK_LIST = Path(__file__).resolve().parents[1] / "tasks" / "data" / "flan_collection_info.csv"


def flan_task_list_path(value: str, base: Path | None) -> Path:
    """`@flan2022`: the Flan 2022 task list flanlab ships (FLAN v2's flan_collection_info.csv, byte-identical)."""
    return SHIPPED_TASK_LIST if value == "@flan2022" else resolve_path(value, base)


def contamination_keys(registry: TaskRegistry) -> set[str]:
    keys = set()
    for t in registry:
        if t.held_out or t.benchmark_source:
            for split in ("validation", "test"):
                for ex in t.examples(split):
                    keys.add(_ckey(ex))
    return keys


def _ckey(ex) -> str:
    return ex.text_key() + "\x00" + " ".join(ex.answer.lower().split())


def _seed_for(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def _streamed(task: Task) -> bool:
    return getattr(task.dataset.source, "streamed", False)


def _draw_rows(seed: int, p: dict) -> np.ndarray:
    """A task's rows in the order its draws use them: a fixed permutation of its training examples; for a streamed
    task (millions of rows) only the first min(n, size) of one, so memory does not grow with the collection."""
    rng = np.random.default_rng(_seed_for(seed, "perm", p["task"].name))
    size = p["task"].size("train")
    if _streamed(p["task"]) and p["n"] < size:
        return rng.choice(size, p["n"], replace=False)
    return rng.permutation(size)


def _mixing_order(seed: int, tasks: list[dict]):
    """Per task its rows in draw order; every record's (task, k-th draw) in a seeded shuffled order: (perms, owner
    task per record, k per record, the order)."""
    perms = [_draw_rows(seed, p) for p in tasks]
    owner = (np.concatenate([np.full(p["n"], i, dtype=np.int32) for i, p in enumerate(tasks)]) if tasks
             else np.zeros(0, np.int32))
    kth = np.concatenate([np.arange(p["n"], dtype=np.int64) for p in tasks]) if tasks else np.zeros(0, np.int64)
    order = np.random.default_rng(_seed_for(seed, "order")).permutation(len(owner))
    return perms, owner, kth, order


def _draw_format(rng: random.Random, fm, task: Task, template, ex, size: int) -> Format:
    """One record's format, drawn from the collection's format probabilities (the draws in a fixed order)."""
    if rng.random() < fm.inversion_prob and not template.is_cot:
        return Format(inverted=True)
    cot = template.is_cot or (ex.rationale is not None and rng.random() < fm.cot_share)
    opts = ex.options is not None and rng.random() < fm.options_prob
    shots = rng.randint(1, fm.max_few_shot) if rng.random() < fm.few_shot_prob and size > 1 else 0
    # no draw when the format is off, so mixtures of configs without it keep their random stream; tasks without raw
    # fields (rows rendered upstream) cannot be shown without their template
    exo = (shots > 0 and fm.exemplar_only_prob > 0 and task.raw_fields != ()
           and rng.random() < fm.exemplar_only_prob)
    return Format(shots, opts and not exo, cot and not exo, exemplar_only=exo)


def iter_records(cfg: MixConfig, plan: dict, registry: TaskRegistry, stats: dict, ngrams: NgramIndex | None = None,
                 length=None) -> Iterator[dict]:
    """Rendered records in mixing order. Dropped ones are counted in stats: `dropped_contaminated` (equal to a
    held-out example) and `ngram_contaminated[task][benchmark]` (sharing an n-gram with a benchmark item)."""
    tasks = plan["tasks"]
    banned = contamination_keys(registry) if cfg.decontaminate else set()
    # a collection's formats override the mixture's field by field
    formats = {c.name: cfg.formats.model_copy(update=c.formats.model_dump(exclude_unset=True)) if c.formats
               else cfg.formats for c in cfg.collections}
    perms, owner, kth, order = _mixing_order(cfg.seed, tasks)
    from ..tasks.sources.flan_collection import prefetch_streamed
    prefetch_streamed([p["task"] for p in tasks], perms)  # the drawn rows of streamed tasks, one pass per file set
    for j in order:
        p = tasks[owner[j]]
        fm = formats[p["collection"]]
        task: Task = p["task"]
        k = int(kth[j])
        size = task.size("train")
        idx = int(perms[owner[j]][k % size])
        ex = task.get("train", idx)
        if banned and _ckey(ex) in banned:
            stats["dropped_contaminated"] += 1
            continue
        if _streamed(task):  # rendered upstream in its format: written as it is
            rec = _streamed_record(task, ex, idx, ngrams, stats)
            if rec is not None:
                yield {"id": f"{task.name}#{k}", "task": task.name, "collection": p["collection"], "template": 0, **rec}
            continue
        rng = random.Random(_seed_for(cfg.seed, task.name, k))
        templates = task.get_templates()
        ti = rng.randrange(len(templates))
        template = templates[ti]
        fmt = _draw_format(rng, fm, task, template, ex, size)
        exemplars = []
        if fmt.few_shot:
            cand = rng.sample(range(size), min(size, fmt.few_shot + 1))
            exemplars = [task.get("train", c) for c in cand if c != idx][: fmt.few_shot]
        kw = {"length": length} if length is not None else {}
        rec = render_example(task, ex, template, fmt, exemplars=exemplars, max_input_len=cfg.max_input_len, rng=rng,
                             **kw)
        if _contaminated(rec, task, ngrams, stats):
            continue
        if task.held_out or task.benchmark_source or task.excluded:  # final guard: never write held-out data
            raise FlanlabError(f"held-out task '{task.name}' reached the writer", field="collections")
        yield {"id": f"{task.name}#{k}", "task": task.name, "collection": p["collection"],
               "template": ti, **rec}


def _streamed_record(task: Task, ex, idx: int, ngrams: NgramIndex | None, stats: dict) -> dict | None:
    rec = {"inputs": ex.fields["prompt"], "targets": ex.answer, "format": task.dataset.source.format_name(idx),
           "n_exemplars": None}
    return None if _contaminated(rec, task, ngrams, stats) else rec


def _contaminated(rec: dict, task: Task, ngrams: NgramIndex | None, stats: dict) -> bool:
    """Whether a record shares an n-gram with a benchmark item (counted per task and benchmark)."""
    hit = ngrams.match(rec["inputs"] + "\n" + rec["targets"]) if ngrams is not None else None
    if hit is not None:
        per = stats["ngram_contaminated"].setdefault(task.name, {})
        per[hit] = per.get(hit, 0) + 1
    return hit is not None


def _write_shard(path: Path, rows: list[dict], fmt: str) -> str:
    with writing(path):
        return _write_shard_file(path, rows, fmt)


def _write_shard_file(path: Path, rows: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_fingerprint(cfg: MixConfig) -> str:
    d = cfg.model_dump()
    d.pop("output", None)
    d.pop("overwrite", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _read_manifest(out: Path) -> dict | None:
    """The manifest flanlab mix wrote into `out`, or None if `out` is not such a directory."""
    try:
        man = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return man if isinstance(man, dict) and "fingerprint" in man and "shards" in man else None


def _remove_stale_partials(out: Path) -> None:
    """Remove .partial-/.old- directories left by a killed `flanlab mix` on this output (their process is gone)."""
    for p in out.parent.glob(f".{out.name}.partial-*") if out.parent.is_dir() else []:
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    if out.parent.is_dir():
        recover_dir(out)  # a publish killed between its renames: the old mixture back, not deleted


def repetition_warnings(plan: dict, per_collection: int = 5) -> list[str]:
    """Tasks drawn more often than they have training rows (the same rows repeated): one line a task, or one line
    for a collection with more than `per_collection` such tasks (NIV2's one-instance tasks)."""
    by_coll: dict[str, list[str]] = {}
    ratios: dict[str, list[float]] = {}
    for p in plan["tasks"]:
        size = p["task"].size("train")
        if p["n"] > size:
            by_coll.setdefault(p["collection"], []).append(
                f"task '{p['task'].name}': {size} training rows drawn {p['n']} times (each row about "
                f"{p['n'] / size:.0f}x)")
            ratios.setdefault(p["collection"], []).append(p["n"] / size)
    out = []
    for coll, lines in by_coll.items():
        if len(lines) <= per_collection:
            out += lines
        else:
            r = ratios[coll]
            out.append(f"collection '{coll}': {len(lines)} tasks drawn more often than they have training rows (each "
                       f"row {min(r):.1f}x to {max(r):.1f}x)")
    return out


@dataclass(frozen=True)
class MixResult:
    """What the mix stage made: the manifest written beside the shards. `cached`: the output already held the
    mixture of this config's fingerprint, so nothing was built."""
    output: Path
    manifest: dict
    cached: bool = False

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def examples(self) -> int:
        return self.manifest["examples"]


def build_mixture(cfg: MixConfig, registry: TaskRegistry | None = None, *, file: object = "<mix config>",
                  progress: bool = True, base: Path | None = None) -> MixResult:
    """Stream the mixture to shards under cfg.output (written to a temp dir, renamed at the end).
    An existing output is never clobbered unless overwrite=True, and then only once the new one is complete."""
    with output_lock(cfg.output):
        return _build_mixture(cfg, registry, file=file, progress=progress, base=base)


def _build_mixture(cfg: MixConfig, registry: TaskRegistry | None, *, file: object, progress: bool,
                   base: Path | None) -> MixResult:
    out = Path(cfg.output)
    cached = _existing_output(out, cfg, file)
    if cached is not None:
        return MixResult(out, cached, cached=True)
    registry = registry or cfg.registry.build(base, file=file)
    plan = plan_mixture(cfg, registry, file=file)
    flan_list = read_flan_task_list(str(flan_task_list_path(cfg.flan_task_list, base))) if cfg.flan_task_list else None
    t_index = time.time()
    ngrams = build_index(cfg.decontamination, base, file=file) if cfg.decontamination.benchmarks else None
    index_seconds = time.time() - t_index
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        stats = {"dropped_contaminated": 0, "ngram_contaminated": {}}
        length = token_length(cfg.tokenizer) if cfg.tokenizer else None
        records = iter_records(cfg, plan, registry, stats, ngrams, length)
        written = write_shards(records, tmp, cfg, progress, stats)
        manifest = {
            "fingerprint": config_fingerprint(cfg), "seed": cfg.seed, **written["summary"],
            "requested_examples": cfg.total_examples,
            "dropped_contaminated": stats["dropped_contaminated"], "excluded": plan["excluded"],
            "ngram_decontamination": ngram_report(cfg, ngrams, stats, index_seconds),
            "length_unit": f"tokens of {cfg.tokenizer}" if cfg.tokenizer else "bytes",
            "flan2022": coverage(plan, plan["collections"], written["per_collection"], written["per_task"], flan_list),
            "plan": [{"task": p["task"].name, "collection": p["collection"], "planned": p["n"],
                      "effective_size": p["effective_size"]} for p in plan["tasks"]],
            "held_out_tasks": sorted(t.name for t in registry if t.held_out),
            "data": training_sources(plan, cfg, base),
            "warnings": repetition_warnings(plan), "config": cfg.model_dump(),
            **{k: written[k] for k in ("per_task", "per_format", "per_collection", "shards")},
        }
        with writing(tmp / "manifest.json"):
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, out)
    return MixResult(out, manifest)


def training_sources(plan: dict, cfg: MixConfig, base: Path | None) -> dict:
    """Where the training rows came from: each streamed submixture's repo@commit (or path), the task files."""
    streamed = {}
    for p in plan["tasks"]:
        if _streamed(p["task"]):
            sub = p["task"].dataset.source.submix
            streamed.setdefault(sub.label, {**sub.origin, "rows": sub.rows, "row_groups_scanned": len(sub.groups),
                                            "row_groups_read": sub.read_groups})
    return {"task_files": [str(f) for f in cfg.registry.resolved_task_files(base)], "collections": streamed}


def _existing_output(out: Path, cfg: MixConfig, file: object) -> dict | None:
    """The cached manifest when `out` holds this very mixture; None when it may be (over)written; else refused."""
    _remove_stale_partials(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty directory holds nothing to protect
    if not out.exists():
        return None
    old = _read_manifest(out)
    if old is None:  # never replace a directory flanlab did not write, overwrite or not
        raise FlanlabError("output exists and is not a flanlab mixture (no manifest.json written by flanlab mix); "
                           "refusing to replace it - pick another output", file=file, field="output")
    if old.get("fingerprint") == config_fingerprint(cfg) and not cfg.overwrite:
        return old  # identical mixture already built: stage cache
    if not cfg.overwrite:
        raise FlanlabError("output holds a mixture built from a different config; set overwrite: true or pick "
                           "another output", file=file, field="output")
    return None


def write_shards(records: Iterator[dict], tmp: Path, cfg: MixConfig, progress: bool, stats: dict) -> dict:
    """Records into shard files of cfg.shard_size, counted per task, format and collection, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    per_task, per_format, per_coll = Counter(), Counter(), Counter()
    shards, buf, t0 = [], [], time.time()
    ext = "jsonl" if cfg.shard_format == "jsonl" else "parquet"

    def flush():
        name = f"shard-{len(shards):05d}.{ext}"
        shards.append({"file": name, "examples": len(buf), "sha256": _write_shard(tmp / name, buf, cfg.shard_format)})
        buf.clear()
    prog = Progress(TextColumn("mixing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} ex/s"),
                    TimeRemainingColumn(), disable=not progress, transient=True)
    with prog:
        bar = prog.add_task("mix", total=cfg.total_examples, rate="-")
        for n, rec in enumerate(records, 1):
            buf.append(rec)
            per_task[rec["task"]] += 1
            per_format[rec["format"]] += 1
            per_coll[rec["collection"]] += 1
            if len(buf) >= cfg.shard_size:
                flush()
            if n % 2000 == 0:
                prog.update(bar, completed=n + _dropped(stats), rate=f"{n / (time.time() - t0):,.0f}")
        if buf:
            flush()
    elapsed, total = time.time() - t0, sum(per_task.values())
    return {"summary": {"examples": total, "seconds": round(elapsed, 3),
                        "examples_per_second": round(total / elapsed, 1) if elapsed > 0 else None},
            "per_task": dict(sorted(per_task.items())), "per_format": dict(sorted(per_format.items())),
            "per_collection": dict(sorted(per_coll.items())), "shards": shards}


def _dropped(stats: dict) -> int:
    return stats["dropped_contaminated"] + sum(sum(v.values()) for v in stats["ngram_contaminated"].values())


def ngram_report(cfg: MixConfig, ngrams: NgramIndex | None, stats: dict, index_seconds: float) -> dict | None:
    if ngrams is None:
        return None
    per_task = stats["ngram_contaminated"]
    per_bench: dict[str, int] = {}
    for hits in per_task.values():
        for b, k in hits.items():
            per_bench[b] = per_bench.get(b, 0) + k
    return {"ngram": cfg.decontamination.ngram, "benchmark_items": ngrams.items, "sources": ngrams.sources,
            "indexed_ngrams": len(ngrams.grams),
            "index_seconds": round(index_seconds, 2), "dropped": sum(per_bench.values()), "per_benchmark": per_bench,
            "per_task": {t: per_task[t] for t in sorted(per_task)}}


def token_length(checkpoint: str):
    """A length function counting the checkpoint tokenizer's tokens (its tokenizer only is loaded)."""
    from ..models.checkpoint import resolve_checkpoint
    from ..models.tokenizer import load_tokenizer
    tok = load_tokenizer(resolve_checkpoint(checkpoint, "tokenizer"))
    return lambda text: len(tok.encode(text))


def read_mixture(path: str | Path) -> Iterator[dict]:
    path = Path(path)
    man_path = path / "manifest.json"
    if not man_path.is_file():
        raise FlanlabError("not a mixture directory (no manifest.json)", file=path)
    man = json.loads(man_path.read_text())
    for sh in man["shards"]:
        f = path / sh["file"]
        if f.suffix == ".jsonl":
            with f.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise FlanlabError(f"line {n} is not valid JSON: {e.msg}", file=f) from None
        else:
            import pyarrow.parquet as pq
            yield from pq.read_table(f).to_pylist()
