import json
import shutil

import pytest
import torch

from flanlab.errors import FlanlabError
from flanlab.evaluate.benchmarks import GSM_EXEMPLARS, load_bbh, load_gsm8k, load_mgsm, load_mmlu, load_tydiqa, parse_bbh_cot_prompt
from flanlab.evaluate.engine import Engine
from flanlab.evaluate.requests import GenRequest
from flanlab.evaluate.harness import BenchmarkSpec, DecodingSpec, EvalConfig, canonical, run_eval
from flanlab.evaluate.scoring import (bootstrap_ci, exact_match, extract_cot_answer, extract_number, f1, majority_vote,
                                      normalized_average, normalized_score)
from flanlab.models.build import ModelSpec, build_model


# ------------------------------------------------------------------ scoring

@pytest.mark.parametrize("text,ans", [
    ("3 + 4 = 7. So the answer is 7.", "7"),
    ("First (B) looks wrong. So the answer is (A).", "(A)"),
    ("So the answer is 5. Wait. So the answer is 6.", "6"),
    ("The answer is (C).", "(C)"),
    ("no marker\nfinal line 42", ""),
    ("Michael had 33 golf balls. So the answer is 33.\n\nQ: next", "33"),
])
def test_extract_cot_answer(text, ans):
    assert extract_cot_answer(text) == ans


def test_number_answers_must_commit():
    from flanlab.evaluate.benchmarks import EvalItem
    it = EvalItem("x", "g", ["7"], {"direct": "", "cot": ""}, "number")
    assert canonical(it, "7", "direct") == "7" and canonical(it, "$7.", "direct") == "7"
    assert canonical(it, "x9q7z", "direct") != "7"  # digits inside garbage are not an answer
    assert canonical(it, "5 + 2 = 7. So the answer is 7 apples.", "cot") == "7"
    assert canonical(it, "5 + 2 = 7 and 7 again", "cot") == ""  # no answer marker: no answer
    from flanlab.evaluate.harness import score
    garbage = canonical(it, "\u57df7\t-\u57df", "direct")
    assert score(it, garbage)["score"] == 0.0 and score(it, canonical(it, "7", "direct"))["score"] == 1.0
    assert score(it, canonical(it, "x. So the answer is 7 apples.", "cot"))["score"] == 1.0


def test_numbers_em_f1():
    assert extract_number("It costs $1,234.50 total") == "1234.5"
    assert extract_number("no digits") is None
    assert exact_match("The Eiffel tower!", ["eiffel tower"]) == 1.0
    assert f1("the big red dog", ["red dog"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert f1("cat", ["dog"]) == 0.0


def test_no_answer_never_matches_article_or_letter_golds():
    from flanlab.evaluate.benchmarks import EvalItem
    from flanlab.evaluate.harness import score
    assert exact_match("", ["a"]) == 0.0 and exact_match("a", ["a"]) == 1.0 and exact_match("A.", ["a"]) == 1.0
    assert exact_match("the cat", ["cat"]) == 1.0
    mc = EvalItem("x", "g", ["A"], {}, "letter")
    assert score(mc, "")["score"] == 0.0 and score(mc, "A")["score"] == 1.0 and score(mc, "B")["score"] == 0.0
    bbh = EvalItem("y", "g", ["(A)"], {}, "letter")
    assert score(bbh, "A")["score"] == 1.0 and score(bbh, "(A)")["score"] == 1.0 and score(bbh, "")["score"] == 0.0
    txt = EvalItem("z", "g", ["a"], {}, "text")
    assert canonical(txt, "no marker at all", "cot") == "" and score(txt, "")["score"] == 0.0


def test_majority_vote():
    assert majority_vote(["7", "8", "7", "9"]) == "7"
    assert majority_vote(["8", "7", "7", "8"]) == "8"  # tie: first seen wins
    assert majority_vote(["", "", "5"]) == "5"  # empty answers do not vote
    assert majority_vote(["Yes", "yes.", "no"]) == "Yes"


def test_normalized_average():
    assert normalized_score(25.0, 25.0) == 0.0
    assert normalized_score(100.0, 25.0) == 100.0
    assert normalized_score(62.5, 25.0) == pytest.approx(50.0)
    # MMLU at 62.5 (random 25) and MGSM at 30 (random 0): (50 + 30) / 2
    assert normalized_average([(62.5, 25.0), (30.0, 0.0)]) == pytest.approx(40.0)
    lo, hi = bootstrap_ci([1, 0] * 50)
    assert lo < 0.5 < hi and hi - lo < 0.25


# ------------------------------------------------------------------ loaders (upstream formats)

def make_mmlu(root, subject="astronomy", n_test=4):
    (root / "dev").mkdir(parents=True)
    (root / "test").mkdir()
    rows = [f'"Q{i}: which?",opt a,opt b,opt c,opt d,{"ABCD"[i % 4]}' for i in range(5)]
    (root / "dev" / f"{subject}_dev.csv").write_text("\n".join(rows) + "\n")
    (root / "test" / f"{subject}_test.csv").write_text("\n".join(r.replace("Q", "T") for r in rows[:n_test]) + "\n")
    (root / "cot_prompts.json").write_text(json.dumps({subject: "The following are ...\n\nQ: x\n(A) a (B) b (C) c (D) d\n"
                                                       "A: Let's think step by step. Because. The answer is (B)."}))


def test_mmlu_loader_and_prompts(tmp_path):
    make_mmlu(tmp_path)
    b = load_mmlu(tmp_path)
    assert len(b.items) == 4 and b.items[1].golds == ["B"] and b.items[0].random == 25.0
    p = b.items[0].prompts["direct"]
    assert p.startswith("The following are multiple choice questions (with answers) about astronomy.\n\n")
    assert p.count("Answer:") == 6 and p.endswith("T0: which?\nA. opt a\nB. opt b\nC. opt c\nD. opt d\nAnswer:")
    assert b.items[0].prompts["cot"].endswith("(A) opt a (B) opt b (C) opt c (D) opt d\nA: Let's think step by step.")
    assert canonical(b.items[0], " B\n\nQ", "direct") == "B"
    assert canonical(b.items[0], "blah. So the answer is (C).", "cot") == "C"


def test_mmlu_bad_row_names_file(tmp_path):
    make_mmlu(tmp_path)
    (tmp_path / "test" / "astronomy_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(FlanlabError, match="answer must be one of") as ei:
        load_mmlu(tmp_path)
    assert ei.value.file.endswith("astronomy_test.csv")


def test_bbh_loader_upstream_files(tmp_path):
    (tmp_path / "bbh").mkdir()
    (tmp_path / "cot-prompts").mkdir()
    exs = [{"input": f"not {v} is", "target": str(not v)} for v in (True, False, True)]
    (tmp_path / "bbh" / "boolean_expressions.json").write_text(json.dumps({"examples": exs}))
    (tmp_path / "cot-prompts" / "boolean_expressions.txt").write_text(
        "Evaluate the result of a random Boolean expression.\n\n"
        "Q: not True is\nA: Let's think step by step.\nnot True = False. So the answer is False.\n\n"
        "Q: True and True is\nA: Let's think step by step.\nBoth are True. So the answer is True.")
    b = load_bbh(tmp_path, shots=2)
    assert len(b.items) == 3 and b.items[0].random == 50.0
    d = b.items[0].prompts["direct"]
    assert d == ("Evaluate the result of a random Boolean expression.\n\nQ: not True is\nA: False\n\n"
                 "Q: True and True is\nA: True\n\nQ: not True is\nA:")
    assert b.items[0].prompts["cot"].endswith("Q: not True is\nA: Let's think step by step.\n")
    (tmp_path / "bbh" / "broken.json").write_text(json.dumps({"examples": [{"input": "x"}]}))
    with pytest.raises(FlanlabError) as ei:
        load_bbh(tmp_path)
    assert ei.value.file.endswith("broken.json") and ei.value.field == "examples[0]"


def test_bbh_lm_eval_prompts_parse():
    pytest.importorskip("yaml")
    from flanlab.evaluate.benchmarks import _bbh_lm_eval
    got = _bbh_lm_eval("boolean_expressions")
    if got is None:
        pytest.skip("lm-eval not installed")
    desc, shots = got
    assert len(shots) == 3 and all(extract_cot_answer(r) in ("True", "False") for _, r in shots)
    text = desc + "\n\n" + "\n\n".join(f"Q: {q}\nA: Let's think step by step.\n{r}" for q, r in shots)
    assert parse_bbh_cot_prompt(text) == (desc, shots)


def test_tydiqa_mgsm_gsm8k_loaders(tmp_path):
    squad = {"data": [{"paragraphs": [{"context": "Paris is the capital of France.", "qas": [
        {"id": "english-1", "question": "Capital of France?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "english-2", "question": "What country?", "answers": [{"text": "France", "answer_start": 24}]}]}]}]}
    (tmp_path / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(squad))
    t = load_tydiqa(tmp_path)
    assert [i.group for i in t.items] == ["english", "english"]
    assert t.items[0].prompts["direct"].count("Q:") == 2 and "A: France\n\n" in t.items[0].prompts["direct"]
    (tmp_path / "mgsm_de.tsv").write_text("Wie viel ist 2+2?\t4\nUnd 3+3?\t6\n")
    m = load_mgsm(tmp_path)
    assert len(m.items) == 2 and m.items[1].golds == ["6"]
    # no exemplars.json here: the 8 English exemplars in Wei et al.'s format (lm-eval's gsm8k-cot)
    assert m.items[0].prompts["cot"].count("The answer is") == 8
    q, r, a = GSM_EXEMPLARS[0]
    assert m.items[0].prompts["cot"].startswith(f"Q: {q}\nA: {r} The answer is {a}.\n\nQ: ")
    assert m.items[0].prompts["cot"].endswith("Q: Wie viel ist 2+2?\nA:")
    (tmp_path / "mgsm_fr.tsv").write_text("only one column\n")
    with pytest.raises(FlanlabError, match="mgsm_fr.tsv: line 1 has 1 tab-separated"):
        load_mgsm(tmp_path)
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    assert load_gsm8k(tmp_path).items[0].golds == ["2"]


# ------------------------------------------------------------------ engine

@pytest.fixture(scope="module", params=["t5-1m", "llama-1m"])
def tiny(request):
    m, tok = build_model(ModelSpec(preset=request.param), seed=5)
    m.config.use_cache = True
    return m.eval(), tok


def test_batched_greedy_equals_one_by_one_and_hf_generate(tiny):
    model, tok = tiny
    prompts = ["What is 2+2?", "Reverse cat", "a much longer prompt than the others, to force padding"]
    e = Engine(model, tok)
    batched = e.generate([GenRequest(p, max_new_tokens=6) for p in prompts])
    singles = [Engine(model, tok).generate([GenRequest(p, max_new_tokens=6)])[0] for p in prompts]
    assert batched == singles
    ids = torch.tensor([e.encode_context(prompts[0])])
    g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, eos_token_id=1, pad_token_id=0)
    g = g[0] if model.config.is_encoder_decoder else g[0, ids.shape[1]:]
    assert tok.decode(g.tolist()) == batched[0][0]


def test_samples_share_one_prompt_pass_and_are_seeded(tiny):
    model, tok = tiny
    e = Engine(model, tok)
    r = GenRequest("Is 7 odd?", n=8, temperature=1.0, top_k=50, max_new_tokens=5, seed=1)
    out = e.generate([r])[0]
    assert len(out) == 8 and len(set(out)) > 1
    assert e.stats["forward_calls"] == 1 and e.stats["prompt_tokens"] == len(e.encode_context(r.prompt))
    assert Engine(model, tok).generate([r])[0] == out  # same seed, same samples
    assert Engine(model, tok).generate([GenRequest(r.prompt, 8, 1.0, 50, 5, (), seed=2)])[0] != out


def test_loglik_ranking_matches_manual(tiny):
    model, tok = tiny
    e = Engine(model, tok)
    ll = e.loglik([("Pick one:", ["yes", "no", "maybe"])])[0]
    from flanlab.models.packed import Tokenized, collate, forward_logits
    if not model.config.is_encoder_decoder:  # one plain forward over context + option, continuation tokens summed
        for opt, v in zip(["yes", "no", "maybe"], ll):
            ctx, cont = e.encode_pair("Pick one:", opt)
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
            manual = sum(lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
            assert v == pytest.approx(manual, abs=1e-4)
        return
    for opt, v in zip(["yes", "no", "maybe"], ll):
        t = Tokenized(e.encode_context("Pick one:"), tok.encode(opt) + [tok.eos_id])
        b = collate([[t]], model.config.is_encoder_decoder)
        with torch.no_grad():
            lp = torch.log_softmax(forward_logits(model, b), -1)
        lab = b["labels"][0]
        manual = sum(lp[0, i, lab[i]].item() for i in range(len(lab)) if lab[i] != -100)
        assert v == pytest.approx(manual, abs=1e-4)


def test_eval_cache_resumes_after_interruption(tmp_path):
    # the log-likelihood benchmark ranks options, so even this untrained model scores above 0: a cache that lost or
    # mixed up answers would change the scores compared below
    cfg = EvalConfig(preset="t5-1m", output=str(tmp_path / "ev"),
                     benchmarks=[BenchmarkSpec(name="synthetic", subsets=["parity:tens", "parity:hundreds", "successor:tens"],
                                               modes=["direct", "cot_sc"], limit=4),
                                 BenchmarkSpec(name="synthetic", label="choices", subsets=["parity:*", "evaluate_boolean:*"],
                                               options=True, mc_scoring="loglik", limit=6)],
                     decoding=DecodingSpec(cot_max_new_tokens=12, sc_samples=3))
    full = run_eval(cfg).results
    assert full["benchmarks"]["choices"]["direct"]["score"] > 0
    cache = tmp_path / "ev" / "cache.jsonl"
    lines = cache.read_text().splitlines()
    n_choice = full["benchmarks"]["choices"]["direct"]["n"]
    assert len(lines) == 2 * 12 + n_choice  # 3 tasks x 4 examples x 2 modes, one line per choice item
    # simulate a kill mid-write: keep half the lines plus a truncated one
    keep = len(lines) // 2
    cache.write_text("\n".join(lines[:keep]) + "\n" + lines[keep][:20])
    again = run_eval(cfg).results
    assert again["engine"]["cache_hits"] == keep
    strip = lambda r: {(b, m): {k: v for k, v in x.items() if k != "seconds"}  # noqa: E731
                       for b, modes in r["benchmarks"].items() for m, x in modes.items()}
    assert strip(again) == strip(full)
    third = run_eval(cfg).results
    assert third["engine"]["cache_hits"] == len(lines) and third["engine"]["forward_calls"] == 0
    # item by item, the resumed run answers exactly as the uninterrupted one (option log-likelihoods differ per item)
    preds = (tmp_path / "ev" / "predictions.jsonl").read_text()
    shutil.rmtree(tmp_path / "ev")
    run_eval(cfg)
    assert (tmp_path / "ev" / "predictions.jsonl").read_text() == preds
    logliks = [json.loads(line)["option_logliks"] for line in preds.splitlines() if "option_logliks" in line]
    assert len(logliks) == n_choice and len({tuple(x) for x in logliks}) > n_choice // 2
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "| synthetic | cot_sc |" in md
    preds = [json.loads(l) for l in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    sc = [p for p in preds if p["mode"] == "cot_sc"]
    assert all(len(p["outputs"]) == 3 and p["answer"] == majority_vote(p["answers"]) for p in sc)


def test_eval_bad_config_names_field(tmp_path, monkeypatch):
    monkeypatch.setenv("FLANLAB_DATA", "hub")  # no local copy, and an empty Hugging Face cache offline
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = EvalConfig(preset="t5-1m", output=str(tmp_path / "e"), benchmarks=[BenchmarkSpec(name="mmlu")])
    with pytest.raises(FlanlabError, match="cais/mmlu@main is not in the hub cache") as ei:
        run_eval(cfg, file="eval.yaml")
    assert ei.value.field == "benchmarks[0].source" and ei.value.file == "eval.yaml"
    squad = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "english-1", "question": "q", "answers": [{"text": "c"}]}]}]}]}
    (tmp_path / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(squad))
    cfg = EvalConfig(preset="t5-1m", output=str(tmp_path / "e"), benchmarks=[BenchmarkSpec(name="tydiqa", path=str(tmp_path), modes=["cot"])])
    with pytest.raises(FlanlabError, match="no cot prompts") as ei:
        run_eval(cfg)
    assert ei.value.field == "benchmarks[0].modes"


def test_unreadable_cache_lines_are_said_once(tmp_path):
    from flanlab.evaluate.answer_cache import DiskCache
    f = tmp_path / "cache.jsonl"
    f.write_text('{"k": "a", "v": 1}\n{"k": "b", "v"\n{"x": 2}\n{"k": "c", "v": 3}\n')
    with pytest.warns(UserWarning, match="2 unreadable cache line"):
        cache = DiskCache(f)
    assert cache.get("a") == 1 and cache.get("c") == 3 and cache.get("b") is None and cache.skipped == 2


def test_loglik_of_long_contexts_and_shared_prefixes_matches_plain_forwards():
    """Decoder-only: a context longer than max_prompt_len keeps its continuation (the joined row is cut, not the
    context alone), and continuations longer than what a shared prefix leaves of a row are still scored from
    their own positions."""
    model, tok = build_model(ModelSpec(preset="llama-1m"), seed=5)
    model.config.use_cache = True
    model.eval()
    opts = [" blue sky", " blueberry", " bluish grey"]  # share " blu", then differ

    def manual(e, c, opt):
        full, cont = e.encode_pair(c, opt)
        row = (full + cont)[-(e.max_prompt_len + 1):]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([row[:-1]])).logits[0].float(), -1)
        return sum(lp[len(row) - 1 - len(cont) + j, t].item() for j, t in enumerate(cont))

    long_ctx = "Question: which of these is a colour? " * 3  # 114 bytes, over the 48-token window
    e = Engine(model, tok, max_prompt_len=48)
    for opt, v in zip(opts, e.loglik([(long_ctx, opts)])[0]):
        assert v == pytest.approx(manual(e, long_ctx, opt), abs=1e-4)
    ctx = "Which of these is a colour?"  # the rows of its options share it and " blu": 32 tokens in common
    e = Engine(model, tok, min_shared_prefix=8)
    got = e.loglik([(ctx, opts)])[0]
    assert e.stats["shared_prefix_tokens"] > 0  # the rows did share a prefix
    for opt, v in zip(opts, got):
        assert v == pytest.approx(manual(e, ctx, opt), abs=1e-4)


def test_rescore_applies_the_current_rules_to_recorded_outputs(tmp_path):
    from test_cli import cli
    """An evaluation scored again from its predictions: unchanged outputs give the same results; an output edited to
    quote a wrong answer before the right one is scored by its last marker; the unparsed share is recomputed."""
    from flanlab.evaluate.harness import load_eval_config
    from flanlab.experiments.rescore import rescore
    cfg_file = tmp_path / "ev.yaml"
    cfg_file.write_text(f"eval: {{preset: t5-1m, output: {tmp_path / 'e'}, benchmarks: [{{name: synthetic, subsets: "
                        "[held_out], limit: 2, modes: [direct, cot]}]}\n")
    cfg = load_eval_config(cfg_file)
    first = run_eval(cfg).results
    again = rescore(tmp_path / "e", cfg, file=cfg_file, base=tmp_path)
    drop = lambda r: {m: {k: v for k, v in x.items() if k != "seconds"} for m, x in r["benchmarks"]["synthetic"].items()}  # noqa: E731
    assert drop(again) == drop(first) and again["rescored"]["evaluated_by"] == first["code"]
    lines = [json.loads(x) for x in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    cot = next(i for i, p in enumerate(lines) if p["mode"] == "cot")
    gold = lines[cot]["golds"][0]
    lines[cot]["outputs"] = [f'It is not "So the answer is zzz." So the answer is {gold}.']
    lines[cot]["score"] = 0.0
    (tmp_path / "e" / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines))
    code, text = cli("rescore", tmp_path / "e", cfg_file)
    assert code == 0, text
    after = [json.loads(x) for x in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert after[cot]["answer"] == gold and after[cot]["score"] == 1.0 and len(after) == len(lines)
    res = json.loads((tmp_path / "e" / "results.json").read_text())["benchmarks"]["synthetic"]["cot"]
    assert "unparsed_pct" in res and "no_answer_pct" in res
    (tmp_path / "other.yaml").write_text("eval: {preset: t5-1m, benchmarks: [{name: synthetic, subsets: [held_out], "
                                         "limit: 1, modes: [direct, cot]}]}\n")
    code, text = cli("rescore", tmp_path / "e", tmp_path / "other.yaml")
    assert code == 2 and "not the config this evaluation ran" in text
