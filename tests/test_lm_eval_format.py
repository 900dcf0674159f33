"""flanlab's results in lm-evaluation-harness's schema, read by lm-eval's own table code; `flanlab eval` without a
YAML (flags and key=value overrides)."""
import json

import pytest

from flanlab.evaluate.lm_eval_format import to_lm_eval
from test_cli import cli, write


def _preds():
    preds = []
    for subject, scores in {"anatomy": [1, 0, 1, 1], "virology": [0, 0, 1]}.items():
        preds += [{"benchmark": "mmlu", "mode": "direct", "group": subject, "score": float(s)} for s in scores]
    preds += [{"benchmark": "bbh", "mode": "cot", "group": "navigate", "score": float(s)} for s in (1, 0)]
    preds += [{"benchmark": "gsm8k", "mode": "cot", "group": None, "score": 1.0}]
    return preds


def _results():
    return {"precision": "fp32", "code": "abc", "normalized_average": 1.5, "benchmarks": {
        "mmlu": {"direct": {"score": 57.1, "benchmark": "mmlu", "shots": 5}},
        "bbh": {"cot": {"score": 50.0, "benchmark": "bbh", "shots": 3}},
        "gsm8k": {"cot": {"score": 100.0, "benchmark": "gsm8k", "shots": 8}}}}


def test_results_take_lm_evals_names_schema_and_statistics():
    d = to_lm_eval(_results(), _preds(), "pretrained=m")
    assert d["group_subtasks"]["mmlu"] == ["mmlu_anatomy", "mmlu_virology"]
    assert d["results"]["mmlu"]["acc,none"] == pytest.approx(4 / 7)  # micro over items, as results.json's score
    sub = d["results"]["mmlu_anatomy"]
    assert sub["acc,none"] == 0.75 and sub["acc_stderr,none"] == pytest.approx((0.75 * 0.25 * 4 / 3 / 4) ** 0.5)
    assert d["results"]["bbh_cot_fewshot"]["exact_match,get-answer"] == 0.5
    assert "gsm8k_cot" in d["results"] and d["n-shot"]["gsm8k_cot"] == 8 and d["n-shot"]["mmlu_virology"] == 5
    assert d["n-samples"]["mmlu"] == {"original": 7, "effective": 7}


def test_lm_evals_own_table_code_renders_a_flanlab_result():
    make_table = pytest.importorskip("lm_eval.utils").make_table
    pytest.importorskip("pytablewriter")
    d = to_lm_eval(_results(), _preds(), "pretrained=m")
    table = make_table(d)
    lines = [line for line in table.splitlines() if "|" in line]
    assert any(line.startswith("|mmlu ") and "0.5714" in line and "acc" in line for line in lines), table
    assert any("mmlu_anatomy" in line and "0.7500" in line for line in lines), table
    assert any("gsm8k_cot" in line and "flexible-extract" in line and "1.0000" in line for line in lines), table
    assert "mmlu" in make_table(d, "groups")


def test_eval_without_a_yaml_from_flags_and_overrides(tmp_path):
    out = tmp_path / "ev"
    code, text = cli("eval", "preset=t5-0.5m", "batch_tokens=4096", "--shots", "0", "--limit", "3", "-o", out)
    assert code == 0, text
    res = json.loads((out / "results.json").read_text())
    assert res["preset"] == "t5-0.5m" and all(r["n"] <= 3 * 11 for m in res["benchmarks"].values() for r in m.values())
    lm = json.loads((out / "results_lm_eval.json").read_text())
    assert lm["config"]["model_args"] == "pretrained=t5-0.5m" and lm["results"]
    # a YAML and key=value after it (the override wins); unknown benchmark names are refused with a suggestion
    cfg = write(tmp_path / "e.yaml", "eval:\n  preset: t5-0.5m\n  output: nowhere\n")
    code, text = cli("eval", cfg, f"output={tmp_path / 'ev2'}", "--limit", "1")
    assert code == 0, text
    assert (tmp_path / "ev2" / "results.json").is_file() and not (tmp_path / "nowhere").exists()
    code, text = cli("eval", "-c", "smollm2-135m", "--tasks", "mmlu,bhh")
    assert code == 2 and "unknown benchmark 'bhh'; did you mean 'bbh'?" in text
    code, text = cli("eval", "--tasks", "mmlu")
    assert code == 2 and "no model" in text
