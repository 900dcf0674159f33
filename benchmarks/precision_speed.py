"""fp32 vs bf16 training on a real checkpoint, LoRA r=16 on every linear layer: `precision: fp32`, `precision: bf16`
(bfloat16 autocast; weights, gradients and optimizer state fp32) and `precision: bf16` + `frozen_weights: bf16` (the
frozen base stored in bfloat16, the adapters fp32), on the same data with the same seed. Models:
  smollm2-135m  the main job's finetune (src/flanlab/jobs/main.yaml's train section: 4 rows of up to 512 + 256
                tokens, AdamW lr 5e-4) on the main job's offline Flan 2022 mixture
  gemma3-270m   gemma_flan.yaml's finetune (4 rows of up to 768 + 256 tokens, AdamW lr 5e-4; make install-gemma)
Each run is a child process (train_child.py: its own peak RSS); variants interleaved over repeats, the order reversed
every other repeat. Measured: non-pad tokens/s of each step after the first, medians over steps and repeats; the
loss of every step of every run (the same batches in the same order, so the curves are paired). Speed: run it on an
otherwise idle machine.

    python benchmarks/precision_speed.py --model smollm2-135m [--steps 8] [--repeats 2]
    python benchmarks/precision_speed.py --model gemma3-270m --steps 6
                                            # -> benchmarks/results/precision_speed_<model>.json
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

from flanlab.config import read_section
from flanlab.utils import code_version
from main_job import MAIN, build_main_mixture
from train_child import gemma_lora_config, measure

ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["smollm2-135m", "gemma3-270m"], default="smollm2-135m")
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--examples", type=int, default=2000)
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"fp32": {"precision": "fp32"}, "bf16 autocast": {"precision": "bf16"},
            "bf16 autocast + frozen bf16": {"precision": "bf16", "frozen_weights": "bf16"}}

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    if a.model == "gemma3-270m":
        mix = build_main_mixture(d / "mix", a.examples, "gemma3-270m", max_input_len=768)

        def config(name, **kw):
            return gemma_lora_config(mix, d / name, steps=a.steps, **kw)
        setup = "gemma_flan.yaml's train section: LoRA r=16 on every linear layer, 4 rows of up to 768 + 256 tokens"
    else:
        mix = build_main_mixture(d / "mix", a.examples, "smollm2-135m")
        data, _ = read_section(MAIN, "train")

        def config(name, **kw):
            return {**data, "mixture": str(mix), "output": str(d / name), "steps": a.steps, "save_every": 10**9,
                    "log_every": 1, "tensorboard": False, **kw}
        setup = "src/flanlab/jobs/main.yaml's train section: LoRA r=16 on every linear layer, 4 rows of 512 + 256"
    runs = {v: [] for v in VARIANTS}
    for rep in range(a.repeats):
        for v in (list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]):
            r = measure(config(f"{v}-{rep}".replace(" ", "_"), **VARIANTS[v]))
            runs[v].append(r)
            print(f"repeat {rep + 1}/{a.repeats} {v}: median {r['tokens_per_s']:,.0f} tok/s, final loss "
                  f"{r['losses'][-1]:.4f}, peak RSS {r['peak_rss_mb'] / 1024:.1f} GB", flush=True)

med = {v: statistics.median(x for r in rs for x in r["tokens_per_s_per_step"]) for v, rs in runs.items()}


def paired_loss_diff(v: str) -> dict:
    """Per-step loss of variant v minus fp32's, over the same batches of the same repeat."""
    diffs = [b - f for rv, rf in zip(runs[v], runs["fp32"]) for b, f in zip(rv["losses"], rf["losses"])]
    return {"mean": round(statistics.mean(diffs), 4), "max_abs": round(max(abs(x) for x in diffs), 4)}


RESULT = {
    "commit": code_version(), "model": a.model, "setup": setup, "steps": a.steps, "repeats": a.repeats,
    "variants": VARIANTS, "median_tokens_per_s": {v: round(x, 1) for v, x in med.items()},
    "speedup_over_fp32": {v: round(med[v] / med["fp32"], 2) for v in VARIANTS if v != "fp32"},
    "speedup_over_fp32_per_repeat": {
        v: [round(statistics.median(rv["tokens_per_s_per_step"]) / statistics.median(rf["tokens_per_s_per_step"]), 2)
            for rv, rf in zip(runs[v], runs["fp32"])] for v in VARIANTS if v != "fp32"},
    "target_speedup": 1.7,
    "loss_minus_fp32_per_step": {v: paired_loss_diff(v) for v in VARIANTS if v != "fp32"},
    "final_loss": {v: [r["losses"][-1] for r in rs] for v, rs in runs.items()},
    "peak_rss_gb": {v: round(max(r["peak_rss_mb"] for r in rs) / 1024, 2) for v, rs in runs.items()},
    "runs": runs,
}
out = ROOT / "benchmarks" / "results" / f"precision_speed_{a.model}.json"
out.write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k != "runs"}))
