"""Crash consistency, measured: for each stage, SIGKILL the command at seeded random moments - half at its k-th write
point (FLANLAB_KILL_AT_WRITE=k: inside checkpoint, manifest, shard and cache writes; flanlab/utils.py:write_point),
half at a random time during the run - then run the same command again and compare with an uninterrupted run.

Outcome per kill: `identical` (the resumed outputs equal the reference: mixture shards and manifest byte for byte
but the timing fields; training losses and final weights bit for bit; predictions and scores), `refused` (exit 2
with one clear line), or `different/crashed` (anything else: the target is 0).

    python benchmarks/crash_consistency.py [--kills 50] [--stages mix,train,eval_direct,eval_cot,eval_rtp,report]
        -> benchmarks/results/crash_consistency.json
    python benchmarks/crash_consistency.py --kills 10 --stages train_fsdp --out benchmarks/results/crash_consistency_fsdp.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLANLAB = [sys.executable, "-m", "flanlab"]
sys.path.insert(0, str(ROOT / "benchmarks"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def stage_commands(work: Path) -> dict:
    """stage -> (setup (run once), command with OUT for the output, compare(out_a, out_b) -> bool)."""
    mix_cfg = write(work / "mix.yaml", "mix:\n  total_examples: 6000\n  shard_size: 500\n")
    train_cfg = write(work / "train.yaml", json.dumps({"train": {
        "mixture": str(work / "mix_ref"), "steps": 12, "batch_size": 4, "save_every": 2, "log_every": 1,
        "model": {"preset": "t5-0.5m"}, "tensorboard": False, "optimizer": "adamw", "lr": 0.01, "threads": 1}}))
    fsdp_cfg = write(work / "train_fsdp.yaml", json.dumps({"train": {
        "mixture": str(work / "mix_ref"), "steps": 8, "batch_size": 4, "save_every": 2, "log_every": 1,
        "model": {"preset": "t5-0.5m"}, "tensorboard": False, "optimizer": "adamw", "lr": 0.01, "threads": 1,
        "strategy": "fsdp"}}))
    ev = {"preset": "t5-0.5m", "batch_tokens": 2048, "max_batch_rows": 4, "threads": 1}
    direct = write(work / "direct.yaml", json.dumps({"eval": {
        **ev, "benchmarks": [{"name": "synthetic", "subsets": ["held_out"], "limit": 8}]}}))
    cot = write(work / "cot.yaml", json.dumps({"eval": {
        **ev, "benchmarks": [{"name": "synthetic", "subsets": ["held_out"], "modes": ["cot", "cot_sc"], "limit": 3}],
        "decoding": {"cot_max_new_tokens": 40, "sc_samples": 3}}}))
    rtp = write(work / "rtp.yaml", json.dumps({"eval": {
        **ev, "benchmarks": [{"name": "realtoxicityprompts", "limit": 6, "samples": 4, "max_new_tokens": 8}]}}))
    return {
        "mix": ([], [*FLANLAB, "mix", str(mix_cfg), "-o", "OUT", "--no-progress"], same_mixture),
        "train": ([[*FLANLAB, "mix", str(mix_cfg), "-o", str(work / "mix_ref"), "--no-progress"]],
                  [*FLANLAB, "train", str(train_cfg), "-o", "OUT", "--no-progress"], same_training),
        # the sharded path: 2 processes (torchrun), each writing its shard of every checkpoint
        "train_fsdp": ([[*FLANLAB, "mix", str(mix_cfg), "-o", str(work / "mix_ref"), "--no-progress", "--overwrite"]],
                       [*FLANLAB, "train", str(fsdp_cfg), "--nproc", "2", "-o", "OUT", "--no-progress"], same_training),
        "eval_direct": ([], [*FLANLAB, "eval", str(direct), "-o", "OUT"], same_eval),
        "eval_cot": ([], [*FLANLAB, "eval", str(cot), "-o", "OUT"], same_eval),
        "eval_rtp": ([], [*FLANLAB, "eval", str(rtp), "-o", "OUT"], same_eval),
        "report": ([[*FLANLAB, "eval", str(direct), "-o", str(work / "report_src")]],
                   ["SH", f"rm -rf OUT && cp -r {work / 'report_src'} OUT && {' '.join(FLANLAB)} report OUT"],
                   same_report),
    }


def _json_without(path: Path, drop: tuple[str, ...], root: Path | None = None) -> object:
    """The file's JSON without the `drop` keys; paths under `root` (the run's own output folder) read as OUT/…."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in drop}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    text = path.read_text()
    return strip(json.loads(text.replace(str(root), "OUT") if root else text))


TIMING = ("seconds", "examples_per_second", "index_seconds", "created", "elapsed", "tokens_per_second", "wall_seconds",
          "engine", "threads", "code", "timing", "summary", "output")  # "output": each run writes to its own folder


def same_mixture(a: Path, b: Path) -> bool:
    files_a = sorted(p.name for p in a.iterdir())
    if files_a != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a if f != "manifest.json") and \
        _json_without(a / "manifest.json", TIMING) == _json_without(b / "manifest.json", TIMING)


def same_training(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file
    wa, wb = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    if wa.keys() != wb.keys() or not all(bool((wa[k] == wb[k]).all()) for k in wa):
        return False
    # every logged line in order: a step logged twice (a killed run's lines left beside the resumed run's) differs
    loss = lambda p: [(json.loads(l)["step"], json.loads(l)["loss"]) for l in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    return loss(a) == loss(b)


def same_eval(a: Path, b: Path, roots: tuple[Path, Path] | None = None) -> bool:
    """Predictions line for line and results.json but timing (and, given `roots`, where each run wrote)."""
    ra, rb = roots or (None, None)
    preds = lambda p: sorted((p / "predictions.jsonl").read_text().splitlines())  # noqa: E731
    return preds(a) == preds(b) and \
        _json_without(a / "results.json", TIMING, ra) == _json_without(b / "results.json", TIMING, rb)


def same_report(a: Path, b: Path) -> bool:
    files = sorted(p.name for p in a.iterdir() if p.suffix in (".md", ".json"))
    return files == sorted(p.name for p in b.iterdir() if p.suffix in (".md", ".json")) and \
        all((a / f).read_text() == (b / f).read_text() for f in files)


def run(cmd: list[str], out: Path, env: dict, kill_after: float | None = None) -> tuple[int, str]:
    args = ["bash", "-c", cmd[1].replace("OUT", str(out))] if cmd[0] == "SH" else \
        [str(out) if c == "OUT" else c for c in cmd]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                         start_new_session=True)
    if kill_after is not None:
        try:
            text = p.communicate(timeout=kill_after)[0]
            return p.returncode, text.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return -9, ""
    text = p.communicate()[0]
    return p.returncode, text.decode(errors="replace")


def measure(stage: str, spec, kills: int, work: Path, seed: int) -> dict:
    setup, cmd, same = spec
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLANLAB_KILL")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    for s in setup:
        assert run(s, work, env)[0] == 0, s
    ref, counter = work / f"{stage}_ref", work / f"{stage}_writes"
    t0 = time.time()
    code, text = run(cmd, ref, {**env, "FLANLAB_COUNT_WRITES": str(counter)})
    seconds = time.time() - t0
    assert code == 0, text
    points = int(counter.read_text()) if counter.exists() else 0
    rng = random.Random(seed)
    tally = {"identical": 0, "refused": 0, "different_or_crashed": 0, "finished_before_kill": 0}
    failures = []
    for i in range(kills):
        out = work / f"{stage}_{i}"
        by_write = points > 0 and i % 2 == 0
        if by_write:
            k = rng.randint(1, points)
            code, _ = run(cmd, out, {**env, "FLANLAB_KILL_AT_WRITE": str(k)})
            how = f"write {k}/{points}"
        else:
            at = rng.uniform(0.0, seconds)
            code, _ = run(cmd, out, env, kill_after=at)
            how = f"time {at:.2f}s/{seconds:.1f}s"
        if code == 0:
            tally["finished_before_kill"] += 1
        code, text = run(cmd, out, env)
        if code == 0 and same(ref, out):
            tally["identical"] += 1
        elif code == 2 and "Traceback" not in text and len([x for x in text.splitlines() if x.startswith("error")]) == 1:
            tally["refused"] += 1
            failures.append({"kill": how, "outcome": "refused", "message": text.strip().splitlines()[-1][:200]})
        else:
            tally["different_or_crashed"] += 1
            failures.append({"kill": how, "exit": code, "tail": text.strip()[-400:]})
        shutil.rmtree(out, ignore_errors=True)
    return {"kills": kills, "write_points_in_a_clean_run": points, "clean_run_seconds": round(seconds, 1), **tally,
            "not_identical": failures[:10]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--stages", default="mix,train,eval_direct,eval_cot,eval_rtp,report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "crash_consistency.json"))
    args = ap.parse_args()
    from machine import cpu_description
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"command": "python benchmarks/crash_consistency.py " + " ".join(sys.argv[1:]), "code": commit,
              "machine": cpu_description(), "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        specs = stage_commands(work)
        for i, stage in enumerate(args.stages.split(",")):
            t0 = time.time()
            result["stages"][stage] = measure(stage, specs[stage], args.kills, work, args.seed + i)
            result["stages"][stage]["bench_seconds"] = round(time.time() - t0, 1)
            print(stage, json.dumps({k: v for k, v in result["stages"][stage].items() if k != "not_identical"}),
                  flush=True)
            Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
