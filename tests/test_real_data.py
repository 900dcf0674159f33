"""The loaders on the real benchmark files in ../shared/data (skipped, saying why, where that folder is absent),
their prompts against lm-eval's own task definitions, and clear errors on damaged copies of them."""
import json
import shutil
from pathlib import Path

import pytest

from flanlab.datapaths import data_root
from flanlab.errors import FlanlabError
from flanlab.evaluate.benchmarks import _lm_eval_root, load_bbh, load_gsm8k, load_mgsm, load_mmlu, load_tydiqa
from flanlab.evaluate.harness import canonical, score

DATA = data_root() or Path("no-real-data")  # FLANLAB_DATA, or ../shared/data when present
pytestmark = pytest.mark.skipif(data_root() is None, reason="no real data: ../shared/data is absent and FLANLAB_DATA is unset")


def test_mmlu_real_counts():
    b = load_mmlu(DATA / "mmlu")
    assert len(b.items) == 14042 and len({i.group for i in b.items}) == 57
    assert {g for i in b.items for g in i.golds} == set("ABCD")
    assert all("cot" in i.prompts for i in b.items)  # Flan CoT exemplars (lm-eval ships them) for every subject
    # a question with quoted commas and a line break survives the CSV parser
    assert any("\n" in i.prompts["direct"].rsplit("\n\n", 1)[-1].split("\nA. ")[0] for i in b.items)


def test_bbh_real_counts_and_canary_header():
    b = load_bbh(DATA / "bbh")
    assert len(b.items) == 6511 and len({i.group for i in b.items}) == 27 and not b.notes
    for it in b.items[:: 250]:
        assert "canary" not in it.prompts["direct"] and "-----" not in it.prompts["cot"]
        assert it.prompts["direct"].count("\nA: ") == 3 and it.prompts["cot"].count("Let's think step by step.") == 4
    golds = {g for i in b.items if i.group == "multistep_arithmetic_two" for g in i.golds}
    assert any(g.startswith("-") for g in golds)


def test_bbh_prompts_equal_lm_eval_task_definitions():
    root = _lm_eval_root()
    if root is None:
        pytest.skip("lm-eval is not installed (make install installs it)")
    import yaml
    b = load_bbh(DATA / "bbh", limit=1)
    for it in b.items:
        cfg = yaml.safe_load((root / "tasks/bbh/fewshot" / f"{it.group}.yaml").read_text())
        shots = "".join(f"Q: {s['input']}\nA: {s['target']}\n\n" for s in cfg["fewshot_config"]["samples"])
        query = json.loads((DATA / "bbh/bbh" / f"{it.group}.json").read_text())["examples"][0]["input"]
        assert it.prompts["direct"] == cfg["description"] + shots + f"Q: {query}\nA:", it.group


def test_mgsm_real_native_exemplars_and_commas():
    b = load_mgsm(DATA / "mgsm")
    assert len(b.items) == 2750 and len({i.group for i in b.items}) == 11
    assert {i.golds[0] for i in b.items} >= {"2125", "114200", "276000", "5600"}  # thousands commas removed
    de = next(i for i in b.items if i.group == "de")
    assert de.prompts["cot"].startswith("Frage: Roger hat 5 Tennisbälle.")
    assert de.prompts["cot"].endswith("\nSchritt-für-Schritt-Antwort:") and de.prompts["cot"].count("Frage: ") == 9
    assert score(de, canonical(de, " 16 - 3 - 4 = 9. Die Antwort lautet 18.", "cot"))["score"] == 1.0
    en = load_mgsm(DATA / "mgsm", languages=["de"], limit=1, exemplars="en").items[0]
    assert en.prompts["cot"].startswith("Q: There are 15 trees") and en.answer_phrases == ("The answer is",)


def test_gsm8k_and_tydiqa_real_counts():
    g = load_gsm8k(DATA / "gsm8k")
    assert len(g.items) == 1319 and all(i.golds[0].lstrip("-").isdigit() for i in g.items)
    t = load_tydiqa(DATA / "tydiqa")
    langs = {i.group for i in t.items}
    assert len(t.items) == 5077 and len(langs) == 9 and {"arabic", "english", "swahili", "telugu"} <= langs
    assert all(i.prompts["direct"].count("\nA:") == 2 for i in t.items[::500])  # one exemplar, then the question


# ---------------------------------------------------------------------------- damaged copies

def copy_of(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(DATA / name, dst)
    return dst


def test_truncated_mmlu_csv_names_file_and_line(tmp_path):
    root = copy_of(tmp_path, "mmlu")
    f = root / "test" / "anatomy_test.csv"
    text = f.read_text(encoding="utf-8")
    f.write_text(text[: text.index('"', 2000) + 5], encoding="utf-8")  # cut inside a quoted field
    with pytest.raises(FlanlabError, match=r"anatomy_test.csv: line \d+: ") as ei:
        load_mmlu(root, subjects=["anatomy"])
    assert "malformed CSV" in str(ei.value) or "columns" in str(ei.value)
    f.write_text('q,a,b,c,d,AB\n', encoding="utf-8")  # "AB" is not an answer letter
    with pytest.raises(FlanlabError, match="line 1: answer must be one of A, B, C, D, got 'AB'"):
        load_mmlu(root, subjects=["anatomy"])


def test_truncated_bbh_json_names_file_and_line(tmp_path):
    root = copy_of(tmp_path, "bbh")
    f = root / "bbh" / "navigate.json"
    f.write_text(f.read_text()[:5000])
    with pytest.raises(FlanlabError, match=r"navigate.json: line 1 column \d+: invalid JSON"):
        load_bbh(root, tasks=["navigate"])


def test_bad_mgsm_gsm8k_tydiqa_rows_name_file_and_line(tmp_path):
    root = copy_of(tmp_path, "mgsm")
    f = root / "mgsm_de.tsv"
    lines = f.read_text(encoding="utf-8").splitlines()
    f.write_text("\n".join(lines[:3] + [lines[3].split("\t")[0] + "\tvierzig"] + lines[4:]) + "\n", encoding="utf-8")
    with pytest.raises(FlanlabError, match="mgsm_de.tsv: line 4: answer 'vierzig' is not a number"):
        load_mgsm(root, languages=["de"])
    g = tmp_path / "test.jsonl"
    g.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n{\"question\": \"cut")
    with pytest.raises(FlanlabError, match="test.jsonl: line 1: needs 'question' and 'answer' ending in '#### N'"):
        load_gsm8k(g)
    d = json.loads((DATA / "tydiqa/tydiqa-goldp-v1.1-dev.json").read_text())
    d["data"][3]["paragraphs"][0]["qas"][0]["answers"] = []
    (tmp_path / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(d))
    with pytest.raises(FlanlabError) as ei:
        load_tydiqa(tmp_path)
    assert ei.value.field == "data[3].paragraphs[0].qas[0]" and ei.value.file.endswith("tydiqa-goldp-v1.1-dev.json")


def test_bbh_random_comes_from_each_items_options():
    """movie_recommendation (one malformed target, "Monsters, Inc") and ruin_names (two) are multiple choice: their
    random was 0 when every target had to be "(X)"; BBH's macro random is 26.6, not 24.8."""
    import numpy as np
    b = load_bbh(DATA / "bbh")
    per = {}
    for it in b.items:
        per.setdefault(it.group, []).append(it.random)
    means = {k: float(np.mean(v)) for k, v in per.items()}
    assert 24 < means["movie_recommendation"] < 26 and 24 < means["ruin_names"] < 26
    assert means["snarks"] == 50.0 and means["navigate"] == 50.0 and means["word_sorting"] == 0.0
    assert round(float(np.mean(list(means.values()))), 1) == 26.6
