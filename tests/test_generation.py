"""Open-ended generation: the response measures by hand, the prompt file's errors, and a run that writes the
responses before and after side by side with paired changes of each measure."""
import json
from pathlib import Path

import pytest

from flanlab.errors import FlanlabError
from flanlab.evaluate.generation import load_prompts, measures, rouge_l

PROMPTS = Path(__file__).resolve().parent.parent / "src" / "flanlab" / "jobs" / "open_ended_prompts.jsonl"


def test_measures_by_hand():
    m = measures("the cat sat the cat sat the cat")
    # 8 words; distinct-1 3/8; 2-grams: 7, distinct (the cat, cat sat, sat the) 3/7; 3-grams: 6, of which the 3 after
    # the first "the cat sat" / "cat sat the" / "sat the cat" repeat earlier ones: 3/6
    assert m == {"length_words": 8.0, "distinct_1": 3 / 8, "distinct_2": 3 / 7, "repetition_3gram": 0.5}
    assert measures("") == {"length_words": 0.0, "distinct_1": 0.0, "distinct_2": 0.0, "repetition_3gram": 0.0}
    assert measures("A b c d")["repetition_3gram"] == 0.0


def test_rouge_l_uses_the_library():
    pytest.importorskip("rouge_score", reason="rouge-score is not installed (optional)")
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert 0 < rouge_l("a cat sat", "the cat sat on the mat") < 1


def test_shipped_prompts_and_bad_prompt_files(tmp_path):
    b = load_prompts(PROMPTS)
    assert len(b.items) >= 12 and {i.id.split("-")[0] for i in b.items} == {"explain", "write", "plan", "reason"}
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a", "prompt": "Say hi."}) + "\n" + json.dumps({"id": "b", "text": "x"}) + "\n")
    with pytest.raises(FlanlabError) as e:
        load_prompts(f)
    assert str(e.value) == f"{f}: field 'prompt': line 2 has no prompt"
    f.write_text(json.dumps({"id": "a", "prompt": "Say hi."}) + "\n" + json.dumps({"id": "a", "prompt": "Hi"}) + "\n")
    with pytest.raises(FlanlabError, match="line 2: id 'a' appears twice"):
        load_prompts(f)


def test_run_writes_generations_side_by_side_and_compares_measures(tmp_path):
    from flanlab.evaluate.harness import BenchmarkSpec, DecodingSpec, EvalConfig
    from flanlab.experiments.run import run
    from test_experiments import tiny_run
    cfg = tiny_run(tmp_path, "g")
    cfg.eval = EvalConfig(benchmarks=[BenchmarkSpec(name="generation", path=str(PROMPTS), limit=3, max_new_tokens=12)],
                          decoding=DecodingSpec())
    rep = run(cfg, progress=False, log=lambda m: None)
    out = tmp_path / "g"
    page = (out / "generations.md").read_text()
    pairs = json.loads((out / "generations.json").read_text())["generation"]
    assert len(pairs) == 3 and all(p["before"] is not None and p["after"] is not None for p in pairs)
    assert page.count("**before:**") == 3 == page.count("**after:**") and pairs[0]["prompt"] in page
    rows = {r["mode"]: r for r in rep["comparison"]["rows"]}
    assert set(rows) >= {"length_words", "distinct_1", "distinct_2", "repetition_3gram"}
    after = rep["results"]["after"]["benchmarks"]["generation"]["length_words"]["score"]
    assert rows["length_words"]["b"] == pytest.approx(after, abs=1e-3)  # words, not %: the scale is kept
    assert rep["comparison"]["normalized_average"] is None  # not one of the paper's six entries
