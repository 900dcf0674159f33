"""How close FSDP on 2 CPU processes comes to one process, and bf16 to fp32: the measured differences behind the
tolerances tests/test_fsdp.py asserts (same setups: built-in mixture, 6 steps, 4 packed rows x 2 micro-batches).

    python benchmarks/fsdp_equality.py     -> benchmarks/results/fsdp_equality.json
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from safetensors.torch import load_file

OUT = Path(__file__).resolve().parent / "results" / "fsdp_equality.json"
SETUPS = {  # as in tests/test_fsdp.py
    "t5-1m adafactor + activation checkpointing": {"optimizer": "adafactor", "model": {"preset": "t5-1m"},
                                                   "gradient_checkpointing": True},
    "llama-1m LoRA r=4, SGD, no clipping": {"optimizer": "sgd", "lr": 0.05, "max_grad_norm": None,
                                            "model": {"preset": "llama-1m", "lora": {"r": 4}}},
    "llama-1m bf16 adafactor": {"optimizer": "adafactor", "lr": 3e-3, "precision": "bf16",
                                "model": {"preset": "llama-1m"}},
    "t5-1m bf16 adafactor": {"optimizer": "adafactor", "lr": 3e-3, "precision": "bf16", "model": {"preset": "t5-1m"}},
}


def run(d: Path, name: str, nproc: int, **kw) -> tuple[list[float], dict, dict]:
    cfg = {"mixture": str(d / "mix"), "output": str(d / name), "steps": 6, "batch_size": 4, "grad_accum": 2,
           "save_every": 3, "log_every": 1, "tensorboard": False, "threads": 1, **kw}
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"train": cfg}))
    cmd = [sys.executable, "-m", "flanlab.train.launch", str(path)]
    if nproc > 1:
        cmd[1:2] = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", "-m"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode:
        sys.exit(p.stdout[-2000:] + p.stderr[-2000:])
    losses = [json.loads(line)["loss"] for line in (d / name / "metrics.jsonl").read_text().splitlines()]
    return (losses, load_file(str(d / name / "final" / "model.safetensors")),
            json.loads((d / name / "summary.json").read_text()))


def compare(a, b) -> dict:
    (la, wa, sa), (lb, wb, sb) = a, b
    return {"max_loss_rel_diff": max(abs(x - y) / abs(x) for x, y in zip(la, lb)),
            "max_weight_abs_diff": max((wa[k] - wb[k]).abs().max().item() for k in wa),
            "param_bytes_ratio": sb["param_bytes_per_rank"] / sa["param_bytes_per_rank"],
            "optimizer_bytes": [sa["optimizer_bytes_per_rank"], sb["optimizer_bytes_per_rank"]],
            "losses": [la, lb]}


def distance(a: dict, b: dict) -> float:
    return float(sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt())


def main() -> None:
    from flanlab.mixture import MixConfig, build_mixture
    from flanlab.models.build import ModelSpec, build_model
    res = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        build_mixture(MixConfig(total_examples=1500, output=str(d / "mix")), progress=False)
        for i, (label, kw) in enumerate(SETUPS.items()):
            one, two = run(d, f"one{i}", 1, **kw), run(d, f"two{i}", 2, strategy="fsdp", **kw)
            res[label] = {"fsdp_2_vs_1_process": compare(one, two)}
            if kw.get("precision") == "bf16":  # distance apart / distance moved: bf16 vs fp32, and 2 vs 1 process
                fp32 = run(d, f"fp32-{i}", 1, **{**kw, "precision": "fp32"})
                w0 = build_model(ModelSpec(**kw["model"]), seed=0)[0].state_dict()
                res[label]["bf16_vs_fp32_1_process"] = {
                    "max_loss_rel_diff": max(abs(x - y) / x for x, y in zip(fp32[0], one[0])),
                    "weights_apart_over_moved": distance(fp32[1], one[1]) / distance(fp32[1], w0)}
                res[label]["fsdp_2_vs_1_process"]["weights_apart_over_moved"] = (distance(two[1], one[1])
                                                                                 / distance(one[1], w0))
            print(label, json.dumps({k: {m: v for m, v in x.items() if m != "losses"} for k, x in res[label].items()}),
                  flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=OUT.parent).stdout.strip()
    OUT.write_text(json.dumps({"commit": commit, **res}, indent=1))


if __name__ == "__main__":
    main()
