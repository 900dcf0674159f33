"""N-gram decontamination (flanlab/mixture/decontaminate.py): 13-word overlaps and whole short items of the held-out
benchmarks are found in training examples, dropped from mixtures and counted per task."""
import json
from pathlib import Path

import pytest

from flanlab.datapaths import data_root
from flanlab.mixture import CollectionSpec, MixConfig, build_mixture, read_mixture
from flanlab.mixture.decontaminate import DecontaminationSpec, NgramIndex, build_index

from test_flan_collection import task_file

SHARED = data_root() or Path("no-real-data")  # FLANLAB_DATA, or ../shared/data when present

QUESTION = ("A farmer has seventeen sheep and all but nine run away through the broken gate near the river, "
            "how many sheep are left in the field")


def planted_benchmarks(tmp_path: Path) -> DecontaminationSpec:
    gsm = tmp_path / "gsm8k"
    gsm.mkdir()
    (gsm / "test.jsonl").write_text(json.dumps({"question": QUESTION, "answer": "17 - 8 = 9\n#### 9"}) + "\n")
    bbh = tmp_path / "bbh"
    bbh.mkdir()
    (bbh / "short.json").write_text(json.dumps({"examples": [
        {"input": "alpha beta gamma delta epsilon zeta eta theta", "target": "x"},  # 8 words: indexed whole
        {"input": "too short to mean anything", "target": "y"}]}))  # 5 words: not indexed
    return DecontaminationSpec(benchmarks=[{"name": "gsm8k", "path": str(gsm)}, {"name": "bbh", "path": str(bbh)}])


def test_ngram_index_matches_13_word_overlaps_and_whole_short_items(tmp_path):
    index = build_index(planted_benchmarks(tmp_path))
    words = QUESTION.split()
    assert index.match("Intro. " + " ".join(words[3:16]) + " and more") == "gsm8k"  # 13 words, mid-text
    assert index.match(" ".join(words[3:15])) is None  # 12 words
    assert index.match("A FARMER has seventeen sheep, and all -- but nine run away through the broken gate!") == "gsm8k"
    assert index.match("x alpha beta gamma delta epsilon zeta eta theta y") == "bbh"
    assert index.match("alpha beta gamma delta epsilon zeta eta") is None
    assert index.match("it is too short to mean anything") is None
    assert index.items == {"gsm8k": 1, "bbh": 2}


def test_mixture_drops_planted_benchmark_copies_and_counts_them_per_task(tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [{"question": f"Clean question number {i} about apples and pears?", "answer": str(i)} for i in range(40)]
    for i in range(6):  # planted in several rows: the content split puts some of each into train
        rows[i]["question"] = f"Solve problem {i}: " + QUESTION + "?"
        rows[6 + i]["question"] = f"Sort list {i}: alpha beta gamma delta epsilon zeta eta theta"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = task_file(tmp_path, [{"dataset": "d", "category": "qa", "collection": "mine",
                              "source": {"type": "jsonl", "path": str(data)}, "templates": [{"input": "{question}"}]}])
    c = MixConfig(output=str(tmp_path / "mix"), total_examples=400, registry={"task_files": [str(f)]},
                  decontamination=planted_benchmarks(tmp_path), formats={"few_shot_prob": 0.0, "inversion_prob": 0.0},
                  collections=[CollectionSpec(name="mine", tasks=["@mine"])])
    m = build_mixture(c, progress=False).manifest
    texts = [r["inputs"] for r in read_mixture(tmp_path / "mix")]
    assert not any("farmer" in t or "alpha beta" in t for t in texts)
    dec = m["ngram_decontamination"]
    assert dec["per_task"]["qa:d"]["gsm8k"] > 0 and dec["per_task"]["qa:d"]["bbh"] > 0
    assert dec["dropped"] == 400 - m["examples"] == sum(dec["per_benchmark"].values())
    assert any("Clean question" in t for t in texts)


@pytest.mark.skipif(not (SHARED / "gsm8k").is_dir(), reason="needs ../shared/data")
def test_real_benchmark_index_catches_a_pasted_test_question():
    spec = DecontaminationSpec(benchmarks=[{"name": n, "path": str(SHARED / n)}
                                           for n in ("mmlu", "bbh", "mgsm", "gsm8k", "tydiqa")])
    index = build_index(spec)
    assert index.items == {"mmlu": 14042, "bbh": 6511, "mgsm": 2750, "gsm8k": 1319, "tydiqa": 5077}
    q = json.loads((SHARED / "gsm8k" / "test.jsonl").read_text().splitlines()[100])["question"]
    assert index.match("Here is a word problem. " + q) in ("gsm8k", "mgsm")  # MGSM's English items are GSM8K's
    assert index.match("Here is a word problem about nothing in particular that nobody has written.") is None


def test_ngram_index_speed_is_enough_for_100k_examples():
    index = NgramIndex()
    for i in range(20000):
        index.add("b", f"item {i} " + " ".join(f"w{(i * 7 + j) % 5000}" for j in range(60)))
    import time
    text = " ".join(f"t{j}" for j in range(300))
    t = time.perf_counter()
    for _ in range(2000):
        index.match(text)
    per_example = (time.perf_counter() - t) / 2000
    assert per_example * 100_000 < 60  # a 300-word example: 100k of them in well under a minute
