"""A huggingface_hub cache in the Hub's own on-disk layout (`hub/datasets--org--name/{refs,snapshots,blobs}`), holding
files in each dataset's *published* schema, made from the real files in ../shared/data. Tests point HF_HOME here and
set HF_HUB_OFFLINE=1, so the real code path (huggingface_hub, then pyarrow) reads it without network."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class HubCache:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.hub = self.home / "hub"

    def commit(self, repo: str, revision: str) -> str:
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()

    def add(self, repo: str, path: str, data: bytes, revision: str = "main") -> Path:
        root = self.hub / f"datasets--{repo.replace('/', '--')}"
        commit = self.commit(repo, revision)
        ref = root / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
        return link

    def parquet(self, repo: str, path: str, rows: list[dict], revision: str = "main", row_group_size=None) -> Path:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf, row_group_size=row_group_size)
        return self.add(repo, path, buf.getvalue(), revision)


def _mmlu(c: HubCache, data: Path) -> None:
    for f in sorted((data / "mmlu" / "test").glob("*_test.csv")):
        subj = f.name[: -len("_test.csv")]
        for split, folder in (("dev", "dev"), ("test", "test")):
            with open(data / "mmlu" / folder / f"{subj}_{folder}.csv", newline="", encoding="utf-8") as fh:
                rows = [{"question": r[0], "subject": subj, "choices": r[1:5], "answer": "ABCD".index(r[5].strip())}
                        for r in csv.reader(fh)]
            c.parquet("cais/mmlu", f"{subj}/{split}-00000-of-00001.parquet", rows)


def _bbh(c: HubCache, data: Path) -> None:
    for f in sorted((data / "bbh" / "bbh").glob("*.json")):
        rows = json.loads(f.read_text())["examples"]
        c.parquet("lukaemon/bbh", f"{f.stem}/test/0000.parquet", rows, revision="refs/convert/parquet")


def _mgsm(c: HubCache, data: Path) -> None:
    ex = json.loads((data / "mgsm" / "exemplars.json").read_text())
    for f in sorted((data / "mgsm").glob("mgsm_*.tsv")):
        lang = f.stem.split("_", 1)[1]
        test = [{"question": q, "answer": None, "answer_number": int(n.replace(",", "")), "equation_solution": None}
                for q, n in (line.rstrip("\n").split("\t") for line in f.read_text(encoding="utf-8").splitlines())]
        shots = ex["MGSM_EXEMPLARS"][lang]
        train = [{"question": shots[k]["q"], "answer": shots[k]["a"],
                  "answer_number": ex["EXEMPLAR_NUMBER_ANSWERS"][int(k) - 1],
                  "equation_solution": ex["EXEMPLAR_EQUATION_SOLUTIONS"][int(k) - 1]} for k in sorted(shots, key=int)]
        c.parquet("juletxara/mgsm", f"{lang}/test/0000.parquet", test, revision="refs/convert/parquet")
        c.parquet("juletxara/mgsm", f"{lang}/train/0000.parquet", train, revision="refs/convert/parquet")


def _tydiqa(c: HubCache, data: Path) -> None:
    d = json.loads((data / "tydiqa" / "tydiqa-goldp-v1.1-dev.json").read_text())
    rows = [{"id": qa["id"], "title": art.get("title", ""), "context": p["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for art in d["data"] for p in art["paragraphs"] for qa in p["qas"]]
    c.parquet("google-research-datasets/tydiqa", "secondary_task/validation-00000-of-00001.parquet", rows)
    # the train split is not in ../shared/data: the last dev question of each language stands in for it
    last = {r["id"].split("-")[0]: r for r in rows}
    c.parquet("google-research-datasets/tydiqa", "secondary_task/train-00000-of-00001.parquet", list(last.values()))


def _gsm8k(c: HubCache, data: Path) -> None:
    rows = [json.loads(line) for line in (data / "gsm8k" / "test.jsonl").read_text().splitlines() if line.strip()]
    c.parquet("openai/gsm8k", "main/test-00000-of-00001.parquet", rows)


def _rtp(c: HubCache, data: Path) -> None:
    text = "".join((data / "rtp" / f).read_text(encoding="utf-8") for f in ("challenging_toxic.jsonl",
                                                                             "nontoxic.jsonl"))
    c.add("allenai/real-toxicity-prompts", "prompts.jsonl", text.encode("utf-8"))


def collection_rows(data: Path, per_task: int = 40) -> dict[str, list[dict]]:
    """The five submixtures in the DPI export's schema, from the real offline training pieces (T0 rendered rows for
    t0 and flan2021, CoT TSVs, NIV2 definitions + their one example); dialog has no offline data: a few rows made
    here from T0 rows, labelled as dialog tasks of the Flan list (qrecc, task_master)."""
    t0 = pq.read_table(data / "train" / "t0" / "t0_sf_sample.parquet").to_pylist()
    out: dict[str, list[dict]] = {k: [] for k in ("flan2021", "t0", "niv2", "cot", "dialog")}
    kinds = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")
    seen: dict[str, int] = {}
    for r in t0:
        sub = "t0" if r["flan_group"] == "T0-SF" else "flan2021"
        name = r["template"] if sub == "t0" else r["template"].split("_")[0] + ":1.0.0"
        if seen.get(name, 0) >= per_task:
            continue
        seen[name] = seen.get(name, 0) + 1
        out[sub].append({"inputs": r["prompt"], "targets": r["completion"], "task_source": sub.upper(),
                         "task_name": name, "template_type": kinds[seen[name] % 4]})
    for f in sorted((data / "train" / "cot").glob("*_train.tsv")):
        name = "cot_" + f.stem[: -len("_train")]
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines()[:per_task]):
            q, a, rat = (line.split("\t") + ["", "", ""])[:3]
            out["cot"].append({"inputs": f"{q}\nLet's think step by step.", "targets": f"{rat} So the answer is {a}.",
                               "task_source": "CoT", "task_name": name, "template_type": kinds[i % 4]})
    for line in (data / "train" / "niv2" / "niv2_tasks.jsonl").read_text(encoding="utf-8").splitlines()[:300]:
        t = json.loads(line)
        ex = t["positive_examples"]
        out["niv2"].append({"inputs": f"{t['definition']}\n\n{ex['input']}", "targets": ex["output"],
                            "task_source": "NIv2", "task_name": t["task"], "template_type": "zs_noopt"})
    for i, r in enumerate(out["t0"][:60]):
        out["dialog"].append({**r, "task_source": "Dialog", "task_name": ("qrecc", "task_master")[i % 2]})
    return out


def add_collection(c: HubCache, rows: dict[str, list[dict]], row_group_size: int = 64) -> None:
    for sub, rs in rows.items():
        c.parquet(f"DataProvenanceInitiative/{sub}_submix_original", "data/train-00000-of-00001-0123456789abcdef.parquet",
                  rs, row_group_size=row_group_size)


def build(home: Path, data: Path) -> HubCache:
    c = HubCache(home)
    for make in (_mmlu, _bbh, _mgsm, _tydiqa, _gsm8k, _rtp):
        make(c, data)
    add_collection(c, collection_rows(data))
    return c
