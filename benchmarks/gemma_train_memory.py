"""Where gemma-3-270m LoRA training's peak RSS comes from (make install-gemma): the peak of loading the model alone,
then of 2 training steps as gemma_train_speed.py runs them (4 packed rows of up to 768 + 256 tokens, LoRA r=16 on
every linear layer, bf16) on the dense-mask path and the per-segment path, with gradient checkpointing, with 1 row
per step, and with the LM head's loss in chunks of 2^25 logits instead of 2^27. Each variant is a child process
(train_child.py: its own peak RSS, VmHWM). Memory, not speed: it may run next to other work.

    python benchmarks/gemma_train_memory.py     # -> benchmarks/results/gemma_train_memory.json
"""
import json
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from flanlab.utils import code_version  # noqa: E402
from main_job import build_main_mixture  # noqa: E402
from train_child import gemma_lora_config, measure  # noqa: E402

VARIANTS = {
    "load only": {"load_only": True},
    "4 rows, dense masks": {"segments": False},
    "4 rows, per-segment attention": {},
    "4 rows, per-segment, gradient checkpointing": {"checkpointing": True},
    "1 row, dense masks": {"segments": False, "rows": 1},
    "4 rows, dense, gradient checkpointing": {"segments": False, "checkpointing": True},
    "4 rows, dense, loss chunks of 2^25 logits": {"segments": False, "loss_chunk_elements": 1 << 25},
}
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_main_mixture(d / "mix", 300, "gemma3-270m", max_input_len=768)
    runs = {}
    for i, (v, spec) in enumerate(VARIANTS.items()):
        cfg = gemma_lora_config(d / "mix", d / f"run{i}", steps=2, precision="bf16",
                                batch_size=spec.get("rows", 4), segment_attention=spec.get("segments", True),
                                gradient_checkpointing=spec.get("checkpointing", False))
        runs[v] = measure(cfg, load_only=spec.get("load_only", False),
                          loss_chunk_elements=spec.get("loss_chunk_elements"))
        print(v, runs[v]["peak_rss_mb"], flush=True)

RESULT = {"commit": code_version(), "model": "gemma-3-270m base (gemma3-270m), LoRA r=16 on q,k,v,o,gate,up,down",
          "variants": VARIANTS,
          "precision": "bf16", "steps": 2, "row_tokens": 1024, "target_peak_rss_gb": 6,
          "peak_rss_gb": {v: round(r["peak_rss_mb"] / 1024, 2) for v, r in runs.items()}, "runs": runs}
(ROOT / "benchmarks" / "results" / "gemma_train_memory.json").write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps(RESULT["peak_rss_gb"]))
