"""Every benchmark flanlab reads, declared once: its Hub repo, revision and configs, its license, its folder in the
real-data directory (FLANLAB_DATA), and how the Hub's published files become the upstream layout the loaders in
evaluate/benchmarks.py read (so local files and the Hub go through one parser, and give identical prompts).

Each Hub file is converted once per commit into `<cache>/<org>--<name>/<commit>/`, one output file per config and
split, written to a temp name and renamed: a file there is complete, and asking for more configs than an earlier run
converts only the missing ones.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import FlanlabError
from ..utils import atomic_write_text

MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous moral_disputes "
    "moral_scenarios nutrition philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology "
    "world_religions").split()
BBH_TASKS = (
    "boolean_expressions causal_judgement date_understanding disambiguation_qa dyck_languages formal_fallacies "
    "geometric_shapes hyperbaton logical_deduction_five_objects logical_deduction_seven_objects "
    "logical_deduction_three_objects movie_recommendation multistep_arithmetic_two navigate object_counting "
    "penguins_in_a_table reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks "
    "sports_understanding temporal_sequences tracking_shuffled_objects_five_objects "
    "tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects web_of_lies word_sorting").split()
MGSM_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
TYDIQA_LANGS = ("arabic", "bengali", "english", "finnish", "indonesian", "korean", "russian", "swahili", "telugu")


def _split_globs(config: str, split: str) -> tuple[str, ...]:
    """A config's split as the Hub publishes it: `cfg/split-00000-of-00001.parquet` (uploaded parquet) or
    `cfg/split/0000.parquet` (the Hub's parquet conversion, refs/convert/parquet)."""
    return (f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet")


def read_rows(files: list[Path], columns: tuple[str, ...]) -> list[dict]:
    """Rows of parquet files, checked to hold `columns`."""
    import pyarrow.parquet as pq
    rows = []
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # truncated or not parquet
            raise FlanlabError(f"not a readable parquet file ({type(e).__name__}: {str(e)[:160]})", file=f) from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise FlanlabError(f"parquet file lacks column(s) {missing}; has {table.column_names}", file=f,
                               field=missing[0])
        rows += table.select(list(columns)).to_pylist()
    return rows


def _files(snap: Path, globs: tuple[str, ...]) -> list[Path]:
    import fnmatch
    found = sorted(p for p in snap.rglob("*.parquet") if any(fnmatch.fnmatch(p.relative_to(snap).as_posix(), g)
                                                              for g in globs))
    if not found:
        raise FlanlabError(f"no file matching {' or '.join(globs)} in the snapshot", file=snap)
    return found


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


# ------------------------------------------------------------------ the Hub's schema -> the upstream layout

def _mmlu(snap: Path, configs: list[str], dest: Path) -> None:
    for subj in configs:
        for split, folder in (("dev", "dev"), ("test", "test")):
            out = dest / folder / f"{subj}_{folder}.csv"
            if out.is_file():
                continue
            buf = io.StringIO()
            w = csv.writer(buf)
            for n, r in enumerate(read_rows(_files(snap, _split_globs(subj, split)),
                                            ("question", "choices", "answer")), 1):
                if len(r["choices"]) != 4 or r["answer"] not in (0, 1, 2, 3):
                    raise FlanlabError(f"row {n}: needs 4 choices and an answer index 0-3", file=snap / subj,
                                       field="choices")
                w.writerow([r["question"], *r["choices"], "ABCD"[int(r["answer"])]])
            write_atomic(out, buf.getvalue())


def _bbh(snap: Path, configs: list[str], dest: Path) -> None:
    for task in configs:
        out = dest / "bbh" / f"{task}.json"
        if not out.is_file():
            rows = read_rows(_files(snap, _split_globs(task, "test")), ("input", "target"))
            write_atomic(out, json.dumps({"examples": rows}, ensure_ascii=False))


def _mgsm(snap: Path, configs: list[str], dest: Path) -> None:
    """Test split -> mgsm_<lang>.tsv; train split (the 8 native-language CoT exemplars, "Frage: ..." /
    "Schritt-für-Schritt-Antwort: ...") -> exemplars.json in upstream exemplars.py's structure."""
    ex_f = dest / "exemplars.json"
    exemplars = json.loads(ex_f.read_text(encoding="utf-8")) if ex_f.is_file() else {"MGSM_EXEMPLARS": {}}
    changed = False
    for lang in configs:
        out = dest / f"mgsm_{lang}.tsv"
        if not out.is_file():
            rows = read_rows(_files(snap, _split_globs(lang, "test")), ("question", "answer_number"))
            write_atomic(out, "".join(" ".join(r["question"].replace("\t", " ").split("\n")) +
                                      f"\t{r['answer_number']}\n" for r in rows))
        if lang not in exemplars["MGSM_EXEMPLARS"]:
            rows = read_rows(_files(snap, _split_globs(lang, "train")),
                             ("question", "answer", "answer_number", "equation_solution"))
            exemplars["MGSM_EXEMPLARS"][lang] = {str(i): {"q": r["question"], "a": r["answer"]}
                                                 for i, r in enumerate(rows, 1)}
            exemplars["EXEMPLAR_NUMBER_ANSWERS"] = [r["answer_number"] for r in rows]
            exemplars["EXEMPLAR_EQUATION_SOLUTIONS"] = [r["equation_solution"] for r in rows]
            changed = True
    if changed:
        write_atomic(ex_f, json.dumps(exemplars, ensure_ascii=False))


def _tydiqa(snap: Path, configs: list[str], dest: Path) -> None:
    """secondary_task (GoldP) validation/train -> SQuAD-format dev/train files, one paragraph per question."""
    for split, name in (("validation", "tydiqa-goldp-v1.1-dev.json"), ("train", "tydiqa-goldp-v1.1-train.json")):
        out = dest / name
        if out.is_file():
            continue
        rows = read_rows(_files(snap, _split_globs("secondary_task", split)),
                         ("id", "title", "context", "question", "answers"))
        data = [{"title": r["title"], "paragraphs": [{"context": r["context"], "qas": [{
            "id": r["id"], "question": r["question"],
            "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"],
                                                                        r["answers"]["answer_start"])]}]}]}
                for r in rows]
        write_atomic(out, json.dumps({"data": data}, ensure_ascii=False))


def _gsm8k(snap: Path, configs: list[str], dest: Path) -> None:
    out = dest / "test.jsonl"
    if not out.is_file():
        rows = read_rows(_files(snap, _split_globs("main", "test")), ("question", "answer"))
        write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _rtp(snap: Path, configs: list[str], dest: Path) -> None:
    """RTP's own records (prompts.jsonl), as the loader reads them: linked, not copied."""
    out = dest / "prompts.jsonl"
    src = snap / "prompts.jsonl"
    if not out.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".prompts.jsonl.tmp-{os.getpid()}"
        os.symlink(src.resolve(), tmp)
        os.replace(tmp, out)


@dataclass(frozen=True)
class BenchmarkData:
    name: str
    repo: str
    revision: str
    license: str
    size: str  # what a full fetch downloads
    local: str  # folder under FLANLAB_DATA
    configs: tuple[str, ...]  # all configs; a spec's tasks/languages select some
    splits: tuple[str, ...]
    convert: Callable[[Path, list[str], Path], None]
    fixed_config: str | None = None  # a benchmark read from one config whatever is asked (tydiqa, gsm8k)
    files: tuple[str, ...] = ()  # a repo read as fixed files rather than config/split parquet (RTP's prompts.jsonl)

    def chosen(self, asked: list[str] | None) -> list[str]:
        if self.fixed_config is not None:
            return [self.fixed_config]
        if not asked:
            return list(self.configs)
        unknown = [c for c in asked if c not in self.configs]
        if unknown:
            from ..config import did_you_mean
            raise FlanlabError(f"{self.repo} has no config '{unknown[0]}'{did_you_mean(unknown[0], self.configs)}",
                               field="tasks")
        return list(asked)

    def required(self, configs: list[str]) -> list[tuple[str, ...]]:
        """Per file the run needs, its alternative globs (one must match)."""
        if self.files:
            return [(f,) for f in self.files]
        return [_split_globs(c, s) for c in configs for s in self.splits]

    def patterns(self, configs: list[str]) -> list[str]:
        return [g for group in self.required(configs) for g in group]


BENCHMARKS: dict[str, BenchmarkData] = {b.name: b for b in (
    BenchmarkData("mmlu", "cais/mmlu", "main", "MIT", "small (57 subjects, dev + test)", "mmlu",
                  tuple(MMLU_SUBJECTS), ("dev", "test"), _mmlu),
    BenchmarkData("bbh", "lukaemon/bbh", "refs/convert/parquet", "MIT", "small (27 tasks)", "bbh",
                  tuple(BBH_TASKS), ("test",), _bbh),
    BenchmarkData("mgsm", "juletxara/mgsm", "refs/convert/parquet", "CC-BY-SA-4.0", "small (11 languages)",
                  "mgsm", MGSM_LANGS, ("train", "test"), _mgsm),
    BenchmarkData("tydiqa", "google-research-datasets/tydiqa", "main", "Apache-2.0",
                  "small (GoldP train + validation)", "tydiqa", ("secondary_task",), ("train", "validation"),
                  _tydiqa, fixed_config="secondary_task"),
    BenchmarkData("gsm8k", "openai/gsm8k", "main", "MIT", "small (test)", "gsm8k", ("main",), ("test",),
                  _gsm8k, fixed_config="main"),
    BenchmarkData("realtoxicityprompts", "allenai/real-toxicity-prompts", "main", "Apache-2.0",
                  "small (99,442 prompts)", "rtp", ("default",), (), _rtp, fixed_config="default",
                  files=("prompts.jsonl",)),
)}


# The Flan 2022 collection as the paper trained on it (FLAN v2's five submixtures, exported by the Data Provenance
# Initiative), read by tasks/sources/flan_collection.py. Sizes from each dataset card where known.
COLLECTION_FILES = "data/train-*.parquet"
FLAN2022_REPOS = {
    "flan2021": ("DataProvenanceInitiative/flan2021_submix_original", "5.49 GB, 5,362,361 rows"),
    "t0": ("DataProvenanceInitiative/t0_submix_original", "size: see its dataset card"),
    "niv2": ("DataProvenanceInitiative/niv2_submix_original", "size: see its dataset card"),
    "cot": ("DataProvenanceInitiative/cot_submix_original", "size: see its dataset card"),
    "dialog": ("DataProvenanceInitiative/dialog_submix_original", "size: see its dataset card"),
}
FLAN2022_LICENSE = "per source dataset (FLAN v2 collection, Apache-2.0 code); see each dataset card"
