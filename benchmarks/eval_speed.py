"""Evaluation speed: BBH-style 3-shot CoT with self-consistency (k=8) in flanlab vs
lm-evaluation-harness, on the same tiny checkpoint and the same data, in one run.

The data is written in BBH's upstream layout (bbh/<task>.json + cot-prompts/<task>.txt) from the
built-in boolean-expression task; lm-eval reads the same examples and exemplars through a local
task YAML (repeats: 8, majority_vote filter), so both build the identical prompt string.
Also runs greedy CoT in both for a per-item agreement check.

    python benchmarks/eval_speed.py [--n 60] [--k 8] [--steps 300]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from flanlab.evaluate.harness import BenchmarkSpec, DecodingSpec, EvalConfig, run_eval
from flanlab.formats import cot_target
from flanlab.tasks.registry import TaskRegistry
from flanlab.models.build import ModelSpec
from flanlab.train.trainer import TrainConfig, train

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=60)
ap.add_argument("--k", type=int, default=8)
ap.add_argument("--steps", type=int, default=500)
ap.add_argument("--max-new", type=int, default=160)
ap.add_argument("--batch", type=int, default=16, help="lm-eval batch size")
a = ap.parse_args()
TASK = "boolean_expressions"
DESC = "Evaluate the result of a random Boolean expression."

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    # ---- a tiny checkpoint: t5-1m trained on prompts in exactly this BBH 3-shot CoT format (train split),
    #      so that it learns to end with "So the answer is X." and the two harnesses have answers to compare
    t = TaskRegistry.default()["evaluate_boolean:bool_triples"]
    shots = [(f"{e.fields['expression']} is", cot_target(e.rationale, e.answer)) for e in t.examples("train", 3)]
    head = DESC + "\n\n" + "".join(f"Q: {q}\nA: Let's think step by step.\n{r}\n\n" for q, r in shots)
    recs = [{"inputs": head + f"Q: {e.fields['expression']} is\nA: Let's think step by step.\n",
             "targets": cot_target(e.rationale, e.answer)} for e in (t.get("train", i) for i in range(3, t.size("train")))]
    (d / "mix").mkdir()
    (d / "mix" / "shard-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "mix" / "manifest.json").write_text(json.dumps({"shards": [{"file": "shard-00000.jsonl", "examples": len(recs)}]}))
    train(TrainConfig(mixture=str(d / "mix"), output=str(d / "ckpt"), steps=a.steps, batch_size=16, optimizer="adamw", lr=1e-3,
                      max_input_len=1024, max_target_len=160, save_every=10**9, tensorboard=False,
                      model=ModelSpec(preset="t5-1m")), progress=False)
    ckpt = d / "ckpt" / "final"

    # ---- BBH-format data from the suite's test split, exemplars (with reasoning) from its train split
    exs = [{"input": f"{e.fields['expression']} is", "target": e.answer} for e in t.examples("test", a.n)]
    (d / "bbh" / "bbh").mkdir(parents=True)
    (d / "bbh" / "cot-prompts").mkdir()
    (d / "bbh" / "bbh" / f"{TASK}.json").write_text(json.dumps({"examples": exs}))
    (d / "bbh" / "cot-prompts" / f"{TASK}.txt").write_text(
        DESC + "\n\n" + "\n\n".join(f"Q: {q}\nA: Let's think step by step.\n{r}" for q, r in shots))
    (d / "flat.jsonl").write_text("".join(json.dumps(e) + "\n" for e in exs))

    def flan(modes, out):
        cfg = EvalConfig(checkpoint=str(ckpt), output=str(d / out), benchmarks=[BenchmarkSpec(name="bbh", path=str(d / "bbh"), modes=modes)],
                         decoding=DecodingSpec(cot_max_new_tokens=a.max_new, sc_samples=a.k, temperature=0.7, top_k=40))
        t0 = time.time()
        r = run_eval(cfg)
        return r, time.time() - t0

    # ---- lm-evaluation-harness with a local task YAML
    import lm_eval
    from lm_eval.tasks import TaskManager

    def lm_task(name, repeats, sample):
        gen = {"until": ["\n\nQ:"], "max_gen_toks": a.max_new, "do_sample": sample}
        if sample:
            gen.update(temperature=0.7, top_k=40)
        return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(d / "flat.jsonl")}},
                "test_split": "test", "output_type": "generate_until",
                "doc_to_text": "Q: {{input}}\nA: Let's think step by step.\n", "doc_to_target": "{{target}}",
                "description": DESC + "\n\n", "target_delimiter": "", "fewshot_delimiter": "\n\n", "num_fewshot": 3,
                "fewshot_config": {"sampler": "first_n", "samples": [{"input": q, "target": r} for q, r in shots]},
                "repeats": repeats, "generation_kwargs": gen,
                "filter_list": [{"name": "vote", "filter": [{"function": "regex", "regex_pattern": "[Ss]o the answer is (.*?)\\.(?:\\s|$)"},
                                                             {"function": "majority_vote"}, {"function": "take_first"}]}],
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]}
    (d / "tasks").mkdir()
    (d / "tasks" / "sc.yaml").write_text(yaml.safe_dump(lm_task("flanlab_bbh_sc", a.k, True)))
    (d / "tasks" / "greedy.yaml").write_text(yaml.safe_dump(lm_task("flanlab_bbh_greedy", 1, False)))
    tm = TaskManager(include_path=str(d / "tasks"))

    def lm(task):
        t0 = time.time()
        r = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={ckpt},backend=seq2seq,dtype=float32", tasks=[task],
                                    task_manager=tm, batch_size=a.batch, device="cpu", log_samples=True)
        el = time.time() - t0
        res = r["results"][task]
        score = next(v for k, v in res.items() if k.startswith("exact_match,"))
        answers = {s["doc_id"]: s["filtered_resps"][0] for s in r["samples"][task]}
        return score * 100, answers, el

    ours_g, tg = flan(["cot"], "g")
    ours_sc, tsc = flan(["cot_sc"], "sc")
    lm_g, lm_g_ans, tlg = lm("flanlab_bbh_greedy")
    lm_sc, _, tlsc = lm("flanlab_bbh_sc")
    preds = [json.loads(l) for l in (d / "g" / "predictions.jsonl").read_text().splitlines()]
    # the same flanlab samples scored under lm-eval's voting rule, where samples without an answer vote "[invalid]"
    from collections import Counter
    sc_preds = [json.loads(l) for l in (d / "sc" / "predictions.jsonl").read_text().splitlines()]
    def lm_rule(p):
        votes = [a if a else "[invalid]" for a in p["answers"]]
        top = Counter(votes).most_common(1)[0][0]
        return float(top.strip() == p["golds"][0])
    ours_sc_lm_rule = 100 * sum(lm_rule(p) for p in sc_preds) / len(sc_preds)
    no_answer_share = sum(not a for p in sc_preds for a in p["answers"]) / sum(len(p["answers"]) for p in sc_preds)
    norm = lambda x: "" if x in ("[invalid]", None) else str(x).strip()  # noqa: E731  (both ways of saying "no answer")
    agree = sum(norm(p["answer"]) == norm(lm_g_ans[i]) for i, p in enumerate(preds)) / len(preds)

RESULT = (json.dumps({
    "items": a.n, "k": a.k, "max_new_tokens": a.max_new,
    "greedy_cot": {"flanlab_s": round(tg, 2), "lm_eval_s": round(tlg, 2), "speedup": round(tlg / tg, 2),
                   "flanlab_score": ours_g["benchmarks"]["bbh"]["cot"]["score"], "lm_eval_score": round(lm_g, 2),
                   "per_item_answer_agreement": round(agree, 3)},
    "self_consistency": {"flanlab_s": round(tsc, 2), "lm_eval_s": round(tlsc, 2), "speedup": round(tlsc / tsc, 2),
                         "flanlab_score": ours_sc["benchmarks"]["bbh"]["cot_sc"]["score"],
                         "flanlab_ci95": ours_sc["benchmarks"]["bbh"]["cot_sc"]["ci95"], "lm_eval_score": round(lm_sc, 2),
                         "flanlab_score_with_lm_eval_voting_rule": round(ours_sc_lm_rule, 2),
                         "flanlab_samples_without_answer": round(no_answer_share, 3)},
    "flanlab_greedy_answers_committed": sum(bool(p["answer"]) for p in preds),
    "sample_answers_flanlab_vs_lm_eval": [(p["answer"], lm_g_ans[i]) for i, p in enumerate(preds[:5])],
}, indent=1))
out = Path(__file__).resolve().parent / "results" / "eval_speed.json"
out.parent.mkdir(exist_ok=True)
out.write_text(RESULT + "\n")
print(RESULT)
