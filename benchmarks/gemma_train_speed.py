"""Packed LoRA training of gemma-3-270m base (make install-gemma): tokens/s and peak RSS of the per-segment
attention path (the default: sliding windows applied inside each segment) vs the dense-mask path (a [L, L] mask per
layer type), and the per-segment path with gradient checkpointing (what brings peak RSS under 6 GB:
gemma_train_memory.py), each with the LM head on target positions only over its 262,144-token vocabulary. Setup as the
issue that measured it before (85 tokens/s fp32, 134 bf16, peak RSS 21.8 GB): LoRA r=16 on every linear layer,
4 packed rows of up to 768 + 256 tokens per step, AdamW, the main job's offline Flan 2022 mixture in Gemma's tokens.
Each run is a child process (train_child.py: its own peak RSS); median tokens/s of the steps after the first; variants
interleaved over repeats (the order reversed every other repeat). Speed: run it on an otherwise idle machine.

    python benchmarks/gemma_train_speed.py [--steps 6] [--repeats 2] [--precisions bf16,fp32]
                                                                    # -> benchmarks/results/gemma_train_speed.json
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path


ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--examples", type=int, default=1000)
ap.add_argument("--precisions", default="bf16", help="comma-separated: bf16,fp32")
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]

from flanlab.utils import code_version  # noqa: E402
from main_job import build_main_mixture  # noqa: E402
from train_child import gemma_lora_config, measure  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_main_mixture(d / "mix", a.examples, "gemma3-270m", max_input_len=768)
    variants = [f"{p} {path}" for p in a.precisions.split(",")
                for path in ("per-segment", "dense", "per-segment+checkpointing")]
    runs = {v: [] for v in variants}
    for r in range(a.repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):  # interleaved, order alternating per repeat
            p, path = v.split()
            cfg = gemma_lora_config(d / "mix", d / f"{p}-{path}-{r}", steps=a.steps, precision=p,
                                    segment_attention=path.startswith("per-segment"),
                                    gradient_checkpointing=path.endswith("+checkpointing"))
            runs[v].append(measure(cfg))
            print(v, {k: x for k, x in runs[v][-1].items() if k not in ("losses", "tokens_per_s_per_step")}, flush=True)

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
