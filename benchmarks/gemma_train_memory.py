"""Where gemma-3-270m LoRA training's peak RSS comes from (make install-gemma): the peak of loading the model alone,
then of 2 training steps as gemma_train_speed.py runs them (4 packed rows of up to 768 + 256 tokens, LoRA r=16 on
every linear layer, bf16) on the dense-mask path and the per-segment path, with gradient checkpointing, with 1 row
per step, and with the LM head's loss in chunks of 2^25 logits instead of 2^27. Each variant is a child process
(its own peak RSS, VmHWM). Memory, not speed: it may run next to other work.

    python benchmarks/gemma_train_memory.py     # -> benchmarks/results/gemma_train_memory.json
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys
from pathlib import Path
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
mixture, out, variant = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
lora = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"]}
if variant.get("load_only"):
    from flanlab.models.build import ModelSpec, build_model
    model, tok = build_model(ModelSpec(checkpoint="gemma3-270m", lora=lora))
    print(json.dumps({"peak_rss_mb": hwm_mb(), "params": sum(p.numel() for p in model.parameters())}))
    raise SystemExit
if variant.get("loss_chunk_elements"):
    from flanlab.models import packed
    packed.CHUNKED_LOSS_ELEMENTS = variant["loss_chunk_elements"]
from flanlab.train.trainer import TrainConfig, train
cfg = TrainConfig(mixture=mixture, output=out, steps=2, batch_size=variant.get("rows", 4), max_input_len=768,
                  max_target_len=256, optimizer="adamw", lr=5e-4, precision="bf16",
                  gradient_checkpointing=variant.get("checkpointing", False),
                  segment_attention=variant.get("segments", True), save_every=10**9, log_every=1,
                  tensorboard=False, model={"checkpoint": "gemma3-270m", "lora": lora})
train(cfg, progress=False)
print(json.dumps({"peak_rss_mb": hwm_mb()}))
"""

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from flanlab.utils import code_version  # noqa: E402
from main_job import build_main_mixture  # noqa: E402

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
        out = subprocess.run([sys.executable, "-c", CHILD, str(d / "mix"), str(d / f"run{i}"), json.dumps(spec)],
                             capture_output=True, text=True, timeout=3600)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        runs[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(v, runs[v], flush=True)

RESULT = {"commit": code_version(), "model": "gemma-3-270m base (gemma3-270m), LoRA r=16 on q,k,v,o,gate,up,down",
          "variants": VARIANTS,
          "precision": "bf16", "steps": 2, "row_tokens": 1024, "target_peak_rss_gb": 6,
          "peak_rss_gb": {v: round(r["peak_rss_mb"] / 1024, 2) for v, r in runs.items()}, "runs": runs}
(ROOT / "benchmarks" / "results" / "gemma_train_memory.json").write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps(RESULT["peak_rss_gb"]))
