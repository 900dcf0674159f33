"""Packed LoRA training of gemma-3-270m base (make install-gemma): tokens/s and peak RSS, fp32 and bf16.

gemma-3-270m is neither T5 nor Llama: its packed rows run the dense-mask path (a mask per layer type for its
sliding-window layers) with the LM head on target positions only over its 262,144-token vocabulary. Setup as the
issue that measured it before (85 tokens/s fp32, 134 bf16, peak RSS 21.8 GB): LoRA r=16 on every linear layer,
4 packed rows of up to 768 + 256 tokens per step, AdamW, the main job's offline Flan 2022 mixture in Gemma's tokens.
Each run is a child process (its own peak RSS); median tokens/s of the steps after the first; precisions
interleaved over repeats.

    python benchmarks/gemma_train_speed.py [--steps 6] [--repeats 1]    # -> benchmarks/results/gemma_train_speed.json
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
mixture, out, steps, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = TrainConfig(mixture=mixture, output=out, steps=steps, batch_size=4, max_input_len=768, max_target_len=256,
                  optimizer="adamw", lr=5e-4, precision=precision, save_every=10**9, log_every=1, tensorboard=False,
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
ap.add_argument("--repeats", type=int, default=1)
ap.add_argument("--examples", type=int, default=1000)
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]

from flanlab.utils import code_version  # noqa: E402
from main_job import build_main_mixture  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_main_mixture(d / "mix", a.examples, "gemma3-270m", max_input_len=768)
    runs = {"fp32": [], "bf16": []}
    for r in range(a.repeats):
        for p in (("bf16", "fp32") if r % 2 == 0 else ("fp32", "bf16")):
            out = subprocess.run([sys.executable, "-c", CHILD, str(d / "mix"), str(d / f"{p}-{r}"), str(a.steps), p],
                                 capture_output=True, text=True, timeout=3600)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            runs[p].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(p, {k: v for k, v in runs[p][-1].items() if k != "losses"}, flush=True)

RESULT = {"commit": code_version(), "model": "gemma-3-270m base (gemma3-270m, Q4_K_M GGUF dequantized to fp32)",
          "lora": "r=16 on q,k,v,o,gate,up,down", "rows_per_step": 4, "row_tokens": 1024, "steps": a.steps,
          "repeats": a.repeats, "before": {"fp32_tokens_per_s": 85, "bf16_tokens_per_s": 134, "peak_rss_gb": 21.8},
          "targets": {"peak_rss_gb": 6, "speedup_same_precision": 2.0},
          "median_tokens_per_s": {p: round(statistics.median(x["tokens_per_s"] for x in v), 1) for p, v in runs.items()},
          "peak_rss_gb": {p: round(max(x["peak_rss_mb"] for x in v) / 1024, 2) for p, v in runs.items()},
          "runs": runs}
RESULT["speedup_vs_before"] = {"fp32": round(RESULT["median_tokens_per_s"]["fp32"] / 85, 2),
                               "bf16": round(RESULT["median_tokens_per_s"]["bf16"] / 134, 2)}
(ROOT / "benchmarks" / "results" / "gemma_train_speed.json").write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k != "runs"}))
