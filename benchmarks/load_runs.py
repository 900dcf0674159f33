"""Load, measured: (a) two `flanlab eval` processes at once on different outputs, starting from an empty model cache
(both convert the same GGUF at the same moment), against one process alone; (b) N consecutive `flanlab run`s of a
small toy config on ONE output, each but the last SIGKILLed at a seeded random moment, then one run to the end,
against one uninterrupted run: mixture shards and manifest, training losses and final weights, every prediction and
the report must be equal. (`eval --nproc 2` against one process is tests/test_eval_parallel.py.)

    python benchmarks/load_runs.py [--runs 50] [--parts concurrent,consecutive]  -> benchmarks/results/load_runs.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from crash_consistency import FLANLAB, TIMING, _json_without, run, same_eval, same_mixture  # noqa: E402

# examples/toy.yaml made small enough to run 50 times: same stages, fewer steps and items
TOY = {"mix": {"total_examples": 2000, "max_input_len": 256},
       "train": {"model": {"preset": "t5-1m"}, "steps": 40, "batch_size": 8, "optimizer": "adamw", "lr": 0.001,
                 "save_every": 10, "log_every": 5, "max_input_len": 256, "threads": 1},
       "eval": {"threads": 1, "benchmarks": [
           {"name": "synthetic", "label": "held_in", "subsets": ["held_in"], "modes": ["direct", "cot", "cot_sc"], "limit": 2},
           {"name": "synthetic", "label": "held_out", "subsets": ["held_out"], "modes": ["direct", "cot", "cot_sc"],
            "limit": 4}], "decoding": {"cot_max_new_tokens": 40, "sc_samples": 3, "temperature": 0.7, "top_k": 40}}}
EVAL = ["--tasks", "bbh", "--limit", "2", "--modes", "direct", "-c", "smollm2-135m", "threads=1"]


def same_run(a: Path, b: Path) -> dict:
    """Which parts of two `flanlab run` outputs are equal (timing fields and output paths aside)."""
    from safetensors.torch import load_file
    wa, wb = (load_file(str(p / "train" / "final" / "model.safetensors")) for p in (a, b))
    loss = lambda p: [(r["step"], r["loss"]) for r in map(json.loads, (p / "train" / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    evals = sorted(p.name for p in a.iterdir() if (p / "predictions.jsonl").is_file())
    return {
        "mixture": same_mixture(a / "mixture", b / "mixture"),
        "losses": loss(a) == loss(b),
        "weights": wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa),
        "predictions": bool(evals) and evals == sorted(p.name for p in b.iterdir() if (p / "predictions.jsonl").is_file())
        and all(same_eval(a / e, b / e, (a, b)) for e in evals),  # eval_after names its checkpoint by path
        "report": not report_differences(a, b),
    }


# what a resumed run reports about itself (how far the killed runs had got), not about the result
PER_RUN = TIMING + ("config", "resumed_from", "train_tokens_this_run", "cached")


def report_differences(a: Path, b: Path) -> list[str]:
    """Paths (a.b.c) where the two runs' run.json differ, per-run fields aside."""
    def diff(x, y, path=""):
        if isinstance(x, dict) and isinstance(y, dict):
            return [d for k in sorted(set(x) | set(y)) for d in diff(x.get(k), y.get(k), f"{path}.{k}".lstrip("."))]
        return [] if x == y else [path or "."]
    return diff(_json_without(a / "run.json", PER_RUN, a), _json_without(b / "run.json", PER_RUN, b))


def consecutive(work: Path, runs: int, env: dict, seed: int) -> dict:
    (work / "toy.yaml").write_text(json.dumps(TOY))
    cmd = [*FLANLAB, "run", str(work / "toy.yaml"), "-o", "OUT", "--no-progress"]
    t0 = time.time()
    code, text = run(cmd, work / "clean", env)
    clean_seconds = time.time() - t0
    assert code == 0, text
    rng, outcomes = random.Random(seed), {"killed": 0, "finished_before_kill": 0, "refused": []}
    out = work / "interrupted"
    # each interrupted run gets a little further: killed at its k-th file write (k in 1..8) or after 1-8 s (the
    # imports take ~3 s); a run that reaches the end first counts as finished_before_kill
    for i in range(runs - 1):
        if i % 2:
            code, text = run(cmd, out, env, kill_after=rng.uniform(1.0, 8.0))
        else:
            code, text = run(cmd, out, {**env, "FLANLAB_KILL_AT_WRITE": str(rng.randint(1, 8))})
        if code in (-9, 137, -signal.SIGKILL):
            outcomes["killed"] += 1
        elif code == 0:
            outcomes["finished_before_kill"] += 1
        else:
            outcomes["refused"].append(text.strip().splitlines()[-1][:200] if text.strip() else f"exit {code}")
    code, text = run(cmd, out, env)
    assert code == 0, text
    equal = same_run(work / "clean", out)
    outcomes["report_differences"] = report_differences(work / "clean", out)[:20]
    return {"runs": runs, "clean_run_seconds": round(clean_seconds, 1), **outcomes,
            "final_state_equal_to_clean_run": equal, "all_equal": all(equal.values())}


def concurrent(work: Path, env: dict) -> dict:
    cache = {**env, "FLANLAB_CACHE": str(work / "cache_pair")}
    args = lambda o: [*FLANLAB, "eval", *EVAL, "-o", str(o)]  # noqa: E731
    t0 = time.time()
    procs = [subprocess.Popen(args(work / f"pair_{i}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cache,
                              cwd=ROOT) for i in (0, 1)]
    texts = [p.communicate()[0].decode(errors="replace") for p in procs]
    pair_seconds = time.time() - t0
    codes = [p.returncode for p in procs]
    code, text = run(args(work / "alone"), work / "alone", {**env, "FLANLAB_CACHE": str(work / "cache_alone")})
    return {"command": "flanlab eval " + " ".join(EVAL), "pair_exit_codes": codes, "alone_exit_code": code,
            "pair_seconds": round(pair_seconds, 1),
            "pair_0_equals_alone": codes[0] == 0 and code == 0 and same_eval(work / "pair_0", work / "alone"),
            "pair_1_equals_alone": codes[1] == 0 and code == 0 and same_eval(work / "pair_1", work / "alone"),
            "converted_models_in_shared_cache": sorted(p.name for p in (work / "cache_pair" / "models").iterdir()),
            "tails": [t.strip()[-300:] for t in texts if "Traceback" in t]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--parts", default="concurrent,consecutive")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load_runs.json"))
    args = ap.parse_args()
    from machine import cpu_description
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {}  # parts measured earlier are kept
    result["machine"] = cpu_description()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLANLAB_KILL")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            t0 = time.time()
            result[part] = concurrent(Path(tmp), env) if part == "concurrent" else \
                consecutive(Path(tmp), args.runs, env, args.seed)
            result[part].update(bench_seconds=round(time.time() - t0, 1), code=commit,
                                run_by="python benchmarks/load_runs.py " + " ".join(sys.argv[1:]))
            print(part, json.dumps(result[part]), flush=True)
            out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
