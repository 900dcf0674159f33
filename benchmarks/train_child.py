"""One measured training run in a child process (its own peak RSS), shared by the training benchmarks
(precision_speed.py, gemma_train_speed.py, gemma_train_memory.py): they build a TrainConfig dict, this runs it and
reports median tokens/s of the steps after the first (the first pays one-time costs), every step's loss, the
precision it ran in and the process's peak RSS (VmHWM).

    from train_child import gemma_lora_config, measure
    measure(gemma_lora_config(mixture, out, steps=6, precision="bf16"))
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

GEMMA_LORA = {"r": 16, "alpha": 32,
              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def gemma_lora_config(mixture, out, **overrides) -> dict:
    """gemma-3-270m base, LoRA r=16 on every linear layer, 4 packed rows of up to 768 + 256 tokens, AdamW lr 5e-4:
    the setup the issue measured before (85 tokens/s fp32, 134 bf16, peak RSS 21.8 GB) and gemma_flan.yaml trains."""
    return {"mixture": str(mixture), "output": str(out), "batch_size": 4, "max_input_len": 768,
            "max_target_len": 256, "optimizer": "adamw", "lr": 5e-4, "save_every": 10**9, "log_every": 1,
            "tensorboard": False, "model": {"checkpoint": "gemma3-270m", "lora": GEMMA_LORA}, **overrides}


def measure(config: dict, *, loss_chunk_elements: int | None = None, load_only: bool = False,
            timeout: float = 3600) -> dict:
    """Run `config` (TrainConfig fields) in a child process; SystemExit with its stderr if it fails."""
    spec = {"config": config, "loss_chunk_elements": loss_chunk_elements, "load_only": load_only}
    out = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(spec: dict) -> dict:
    from flanlab.config import validate
    from flanlab.train.trainer import TrainConfig, train
    cfg = validate(TrainConfig, spec["config"], file="<benchmark config>")
    if spec["load_only"]:
        from flanlab.models.build import build_model
        model, _ = build_model(cfg.model)
        return {"peak_rss_mb": _peak_rss_mb(), "params": sum(p.numel() for p in model.parameters())}
    if spec["loss_chunk_elements"]:
        from flanlab.models import packed
        packed.CHUNKED_LOSS_ELEMENTS = spec["loss_chunk_elements"]
    summary = train(cfg, progress=False).summary
    recs = [json.loads(line) for line in open(Path(cfg.output) / "metrics.jsonl")]
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs[1:]) if len(recs) > 1 else None,
            "tokens_per_s_per_step": [r["tokens_per_s"] for r in recs[1:]], "losses": [r["loss"] for r in recs],
            "precision": summary["precision"], "frozen_weights": summary["frozen_weights"],
            "peak_rss_mb": _peak_rss_mb()}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
