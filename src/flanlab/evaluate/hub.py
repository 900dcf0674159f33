"""Benchmarks from the Hugging Face hub (when online): downloaded with `datasets` and written in
each benchmark's upstream file layout, so the local loaders are the only parsing path.

| benchmark | hub dataset (default) | written as |
|---|---|---|
| mmlu | cais/mmlu (one config per subject; dev + test) | dev/<s>_dev.csv, test/<s>_test.csv |
| bbh | lukaemon/bbh (one config per task) | bbh/<task>.json |
| tydiqa | google-research-datasets/tydiqa, secondary_task (GoldP) | tydiqa-goldp-v1.1-{dev,train}.json |
| mgsm | juletxara/mgsm (one config per language) | mgsm_<lang>.tsv |
| gsm8k | openai/gsm8k, main | test.jsonl |
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

from ..errors import FlanlabError

HUB = {
    "mmlu": "cais/mmlu",
    "bbh": "lukaemon/bbh",
    "tydiqa": "google-research-datasets/tydiqa",
    "mgsm": "juletxara/mgsm",
    "gsm8k": "openai/gsm8k",
    "realtoxicityprompts": "allenai/real-toxicity-prompts",
}
MGSM_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]


def _load(repo: str, config: str | None, split: str, loader: Callable | None):
    if loader is None:
        import datasets
        loader = datasets.load_dataset
    try:
        return loader(repo, config, split=split)
    except Exception as e:  # offline, unknown repo/config/split
        raise FlanlabError(f"cannot load {repo}[{config}] split '{split}' from the hub: {e}", field="path") from None


def fetch(name: str, dest: Path, *, repo: str | None = None, configs: list[str] | None = None,
          loader: Callable | None = None) -> Path:
    """Download benchmark `name` into `dest` in its upstream layout (idempotent: a finished
    download is marked by dest/.complete). `loader` replaces datasets.load_dataset (tests)."""
    dest = Path(dest)
    if (dest / ".complete").is_file():
        return dest
    repo = repo or HUB[name]
    dest.mkdir(parents=True, exist_ok=True)
    if name == "mmlu":
        if not configs:
            raise FlanlabError("mmlu from the hub needs 'tasks' (subjects)", field="tasks")
        (dest / "dev").mkdir(exist_ok=True)
        (dest / "test").mkdir(exist_ok=True)
        for subj in configs:
            for split, folder in (("dev", "dev"), ("test", "test")):
                rows = _load(repo, subj, split, loader)
                with open(dest / folder / f"{subj}_{folder}.csv", "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    for r in rows:
                        w.writerow([r["question"], *r["choices"], "ABCD"[int(r["answer"])]])
    elif name == "bbh":
        if not configs:
            raise FlanlabError("bbh from the hub needs 'tasks'", field="tasks")
        (dest / "bbh").mkdir(exist_ok=True)
        for task in configs:
            rows = _load(repo, task, "test", loader)
            examples = [{"input": r["input"], "target": r["target"]} for r in rows]
            (dest / "bbh" / f"{task}.json").write_text(json.dumps({"examples": examples}))
    elif name == "tydiqa":
        for split, fname in (("validation", "tydiqa-goldp-v1.1-dev.json"), ("train", "tydiqa-goldp-v1.1-train.json")):
            rows = _load(repo, "secondary_task", split, loader)
            paras = [{"context": r["context"], "qas": [{"id": r["id"], "question": r["question"], "answers": [
                {"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
                for r in rows]
            (dest / fname).write_text(json.dumps({"data": [{"paragraphs": paras}]}))
    elif name == "mgsm":
        for lang in configs or MGSM_LANGS:
            rows = _load(repo, lang, "test", loader)
            lines = [" ".join(r["question"].split("\t")).replace("\n", " ") + f"\t{r['answer_number']}\n" for r in rows]
            (dest / f"mgsm_{lang}.tsv").write_text("".join(lines), encoding="utf-8")
    elif name == "gsm8k":
        rows = _load(repo, "main", "test", loader)
        (dest / "test.jsonl").write_text("".join(json.dumps({"question": r["question"],
                                                             "answer": r["answer"]}) + "\n" for r in rows))
    elif name == "realtoxicityprompts":  # RTP's own records, one per line, as the local files hold them
        rows = _load(repo, None, "train", loader)
        (dest / "prompts.jsonl").write_text("".join(json.dumps({"prompt": r["prompt"], "challenging": r["challenging"]})
                                                    + "\n" for r in rows), encoding="utf-8")
    else:
        raise FlanlabError(f"{name} has no hub source", field="name")
    (dest / ".complete").write_text("ok\n")
    return dest
