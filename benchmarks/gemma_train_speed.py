"""Packed LoRA training of gemma-3-270m base (make install-gemma): tokens/s and peak RSS of the per-segment
attention path (the default: sliding windows applied inside each segment) vs the dense-mask path (a [L, L] mask per
layer type), and the per-segment path with gradient checkpointing (what brings peak RSS under 6 GB:
gemma_train_memory.py), each with the LM head on target positions only over its 262,144-token vocabulary. Setup as the
issue that measured it before (85 tokens/s fp32, 134 bf16, peak RSS 21.8 GB): LoRA r=16 on every linear layer,
4 packed rows of up to 768 + 256 tokens per step, AdamW, the main job's offline Flan 2022 mixture in Gemma's tokens.
Each run is a child process (its own peak RSS); median tokens/s of the steps after the first; variants
interleaved over repeats (the order reversed every other repeat). Speed: run it on an otherwise idle machine.

    python benchmarks/gemma_train_speed.py [--steps 6] [--repeats 2] [--precisions bf16,fp32]
                                                                    # -> benchmarks/results/gemma_train_speed.json
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, statistics, sys
from pathlib import Path
from flanlab.train.trainer import TrainConfig, train
mixture, out, steps, precision, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
ckpt = path.endswith("+checkpointing")
path = path.removesuffix("+checkpointing")
cfg = TrainConfig(mixture=mixture, output=out, steps=steps, batch_size=4, max_input_len=768, max_target_len=256,
                  optimizer="adamw", lr=5e-4, precision=precision, save_every=10**9, log_every=1, tensorboard=False,
                  segment_attention=path == "per-segment", gradient_checkpointing=ckpt,
                  model={"checkpoint": "gemma3-270m", "lora": {"r": 16, "alpha": 32, "target_modules": [
                      "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}})
s = train(cfg, progress=False)
recs = [json.loads(line) for line in open(Path(out) / "metrics.jsonl")]
print(json.dumps({"tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs[1:]),
                  "losses": [r["loss"] for r in recs], "precision": s["precision"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--examples", type=int, default=1000)
ap.add_argument("--precisions", default="bf16", help="comma-separated: bf16,fp32")
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]

from flanlab.utils import code_version  # noqa: E402
from main_job import build_main_mixture  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_main_mixture(d / "mix", a.examples, "gemma3-270m", max_input_len=768)
    variants = [f"{p} {path}" for p in a.precisions.split(",")
                for path in ("per-segment", "dense", "per-segment+checkpointing")]
    runs = {v: [] for v in variants}
    for r in range(a.repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):  # interleaved, order alternating per repeat
            p, path = v.split()
            out = subprocess.run([sys.executable, "-c", CHILD, str(d / "mix"), str(d / f"{p}-{path}-{r}"),
                                  str(a.steps), p, path], capture_output=True, text=True, timeout=3600)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(v, {k: x for k, x in runs[v][-1].items() if k != "losses"}, flush=True)

RESULT = {"commit": code_version(), "model": "gemma-3-270m base (gemma3-270m, Q4_K_M GGUF dequantized to fp32)",
          "lora": "r=16 on q,k,v,o,gate,up,down", "rows_per_step": 4, "row_tokens": 1024, "steps": a.steps,
          "repeats": a.repeats, "before": {"fp32_tokens_per_s": 85, "bf16_tokens_per_s": 134, "peak_rss_gb": 21.8,
                                           "note": "the issue's figures, another session's machine"},
          "targets": {"peak_rss_gb": 6, "speedup_same_precision": 2.0},
          "median_tokens_per_s": {v: round(statistics.median(x["tokens_per_s"] for x in r), 1) for v, r in runs.items()},
          "peak_rss_gb": {v: round(max(x["peak_rss_mb"] for x in r) / 1024, 2) for v, r in runs.items()},
          "runs": runs}
med = RESULT["median_tokens_per_s"]
RESULT["per_segment_over_dense"] = {p: round(med[f"{p} per-segment"] / med[f"{p} dense"], 2)
                                    for p in a.precisions.split(",")}
RESULT["checkpointing_over_none"] = {p: round(med[f"{p} per-segment+checkpointing"] / med[f"{p} per-segment"], 2)
                                     for p in a.precisions.split(",")}
(ROOT / "benchmarks" / "results" / "gemma_train_speed.json").write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k != "runs"}))
