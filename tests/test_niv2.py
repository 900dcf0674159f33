"""Natural Instructions v2 tasks (flanlab/tasks/sources/niv2.py): definition then input, zero-shot in mixtures,
bad metadata lines named; the real metadata (1,654 tasks) against the Flan 2022 task list."""
import json
from pathlib import Path

import pytest
import yaml

from flanlab.datapaths import data_root
from flanlab.errors import FlanlabError
from flanlab.mixture import CollectionSpec, MixConfig, build_mixture, read_mixture
from flanlab.tasks.registry import load_task_file

from test_flan_collection import t0_task_file, task_file

SHARED = data_root() or Path("no-real-data")  # FLANLAB_DATA, or ../shared/data when present


NIV2_ROWS = [
    {"task": "task001_quoref_question_generation", "definition": "Write a question about the passage.",
     "positive_examples": {"input": "Passage: Tom met Ann.", "output": "Who met Ann?", "explanation": "ok"},
     "number_examples": 6500},
    {"task": "task002_quoref_answer_generation", "definition": "Answer the question.",
     "positive_examples": {"input": "Q: who?", "output": "Tom", "explanation": "ok"}, "number_examples": 1000},
    {"task": "task700_mmmlu_answer_generation_high_school_chemistry", "definition": "Answer the chemistry question.",
     "positive_examples": {"input": "What is H2O?", "output": "water", "explanation": ""}, "number_examples": 100},
    {"task": "task999_not_on_the_list", "definition": "Do something.",
     "positive_examples": {"input": "x", "output": "y", "explanation": ""}, "number_examples": 10},
]
FLAN_CSV = """Source,Dataset,Specific Task Category,Generic Task Category,Languages
NIv2,quoref,task001_quoref_question_generation,Question Generation,['English']
NIv2,quoref,task002_quoref_answer_generation,Question Answering,['English']
NIv2,quoref,task003_quoref_missing_here,Question Answering,['English']
T0,quoref,quoref_Find_Answer,Extractive QA,English
T0,quoref,quoref_Guess_Answer,Extractive QA,English
FLAN/T0,ag_news_subset,Topic Classification,Text Categorization,English
FLAN,imdb_reviews,Sentiment Analysis,Sentiment Analysis,English
FLAN,aeslc,Summarization,Summarization,English
CoT,cot_gsm8k,Grade School Math,Grade School Math,English
CoT,stream_aqua,Math,Math,English
Dialog,qrecc,Dialog,Dialog,English
"""


def niv2_file(tmp_path: Path, rows=NIV2_ROWS) -> Path:
    (tmp_path / "niv2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "flan.csv").write_text(FLAN_CSV)
    return task_file(tmp_path, [{"dataset": "niv2", "category": "niv2", "collection": "niv2",
                                 "source": {"type": "niv2", "path": "niv2.jsonl", "task_list": "flan.csv"}}],
                     name="niv2.yaml")


def test_niv2_tasks_render_definition_then_input_with_one_instance(tmp_path):
    tasks = {t.name: t for t in load_task_file(niv2_file(tmp_path))}
    t = tasks["niv2:task001_quoref_question_generation"]
    assert (t.size("train"), t.size("validation"), t.size("test")) == (1, 0, 0)
    assert t.dataset.upstream_size == 6500 and len(t.get_templates()) >= 5
    ex = t.get("train", 0)
    for tpl in t.get_templates():
        inp, tgt = tpl.render(ex)
        assert inp.index("Write a question about the passage.") < inp.index("Passage: Tom met Ann.") and tgt == "Who met Ann?"
    assert tasks["niv2:task700_mmmlu_answer_generation_high_school_chemistry"].benchmark_source  # MMLU-derived
    assert tasks["niv2:task999_not_on_the_list"].excluded == "not in Flan 2022's NIV2 task list"
    assert not t.benchmark_source and t.excluded is None


def test_niv2_in_a_mixture_is_zero_shot_counted_and_compared_by_name(tmp_path):
    f, t0 = niv2_file(tmp_path), t0_task_file(tmp_path)
    c = MixConfig(output=str(tmp_path / "m"), total_examples=400, registry={"task_files": [str(f), str(t0)]},
                  flan_task_list=str(tmp_path / "flan.csv"),
                  collections=[CollectionSpec(name="niv2", tasks=["@niv2"], flan_submixture="niv2"),
                               CollectionSpec(name="muffin", tasks=["@muffin"], flan_submixture="muffin"),
                               CollectionSpec(name="t0sf", tasks=["@t0sf"], flan_submixture="t0sf")],
                  formats={"few_shot_prob": 1.0, "exemplar_only_prob": 0.5})
    m = build_mixture(c, progress=False).manifest
    rows = [r for r in read_mixture(tmp_path / "m") if r["collection"] == "niv2"]
    assert rows and all(r["format"].startswith("zs") for r in rows)  # one instance: no exemplar to show
    assert {r["task"] for r in rows} == {"niv2:task001_quoref_question_generation", "niv2:task002_quoref_answer_generation"}
    cov = m["flan2022"]
    niv2 = cov["submixtures"]["niv2"][0]
    assert niv2["excluded"] == {"benchmark source": 1, "not in Flan 2022's NIV2 task list": 1}
    assert niv2["by_name"] == {"list_tasks": 3, "present": 2, "missing": ["task003_quoref_missing_here"], "extra": []}
    assert niv2["note"].startswith("instances per task: 1 (upstream: 7,500 in all")
    muffin = cov["submixtures"]["muffin"][0]["by_name"]  # ag_news -> ag_news_subset, imdb -> imdb_reviews
    assert (muffin["present"], muffin["missing"], muffin["extra"]) == (2, ["aeslc"], [])
    t0sf = cov["submixtures"]["t0sf"][0]["by_name"]
    assert (t0sf["present"], t0sf["missing"]) == (1, ["quoref_Guess_Answer"])
    assert cov["list_tasks"] == 3 + 2 + 3 + 2 and cov["flan_tasks_present_by_name"] == 5
    assert {x["submixture"]: x["list_tasks"] for x in cov["missing"]} == {"cot": 2, "dialog": 1}
    from flanlab.cli import mix_summary
    text = "\n".join(mix_summary(m))
    assert "5 of the 10 tasks on Flan's task list present by name" in text and "missing: task003_quoref_missing_here" in text


@pytest.mark.parametrize("row, msg", [
    ({"task": "task5_x", "positive_examples": {"input": "a", "output": "b"}}, "line 2 has no 'definition'"),
    ({"task": "task5_x", "definition": "Do it."}, "line 2 has no 'positive_examples'"),
    ({"task": "task5_x", "definition": "Do it.", "positive_examples": {"output": "b"}},
     "line 2: 'positive_examples' needs an 'input' and an 'output'"),
])
def test_bad_niv2_lines_are_named(tmp_path, row, msg):
    from test_cli import cli
    f = niv2_file(tmp_path, [NIV2_ROWS[0], row])
    with pytest.raises(FlanlabError, match=msg) as e:
        load_task_file(f)
    assert "niv2.jsonl" in str(e.value)
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(yaml.safe_dump({"mix": {"output": str(tmp_path / "out"), "total_examples": 10,
                                           "registry": {"task_files": [str(f)]},
                                           "collections": [{"name": "n", "tasks": ["@niv2"]}]}}))
    code, text = cli("mix", cfg)
    assert code == 2 and msg in text and "niv2.jsonl" in text and not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED / "train" / "niv2" / "niv2_tasks.jsonl").is_file(), reason="needs ../shared/data")
def test_real_niv2_metadata_and_flan_task_list():
    from flanlab.tasks.flan_list import read_flan_task_list
    from flanlab.tasks.sources.niv2 import niv2_tasks
    flan = read_flan_task_list(str(SHARED / "train" / "flan_collection_info.csv"))
    assert {k: len(v) for k, v in flan.tasks.items()} == {"muffin": 76, "t0sf": 193, "niv2": 1556, "cot": 9, "dialog": 3}
    tasks = niv2_tasks(SHARED / "train" / "niv2" / "niv2_tasks.jsonl", flan_list=flan.names("niv2"), category="niv2",
                       collection="niv2")
    assert len(tasks) == 1654
    usable = [t for t in tasks if not t.benchmark_source and not t.excluded]
    assert len(usable) == 1556 and all(t.size("train") == 1 for t in usable)
    assert sum(t.benchmark_source for t in tasks) == 57  # NIV2's MMLU tasks ("mmmlu"), none of them on Flan's list
