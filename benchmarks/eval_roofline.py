"""How far flanlab's evaluation is from what this CPU can do (issue: evaluation at the hardware's limit).

Ceilings, in this process, 2 threads: (1) matmul throughput, fp32 and bf16 (2048 x 2048, best of 5); (2) the
model's best forward throughput in tokens/s with no padding: SmolLM2-135M's backbone (no output head) and the whole
model with logits at the last position only (what a prefill needs), over batch x length in {1, 4, 8, 16} x {128,
256, 512}, fp32 and bf16 autocast. Then flanlab's tokens actually computed per second in each phase - log-likelihood
(MMLU 5-shot), prefill and decode (BBH 3-shot direct; BBH 3-shot CoT) - from the engine's phase counters, each as a
fraction of the forward ceiling in its precision (decode as a fraction of the batch-1 ... 16 decode-step ceiling).

    python benchmarks/eval_roofline.py [--items 2]     # --items: per MMLU subject / BBH task (CoT: 1 per task)
Writes benchmarks/results/eval_roofline.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_gflops(dtype) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    return 2 * 2048 ** 3 / best(lambda: a @ b) / 1e9


def forward_ceiling(model, precision: str) -> dict:
    """Best tokens/s of the backbone and of the model with last-position logits, and of one decode step."""
    from flanlab.models.build import base_model
    from flanlab.models.device import autocast
    backbone = base_model(model).model
    head = base_model(model).lm_head
    out = {"backbone": {}, "prefill_last_logits": {}, "decode_step": {}}
    with torch.no_grad(), autocast(precision, torch.device("cpu")):
        for b in (1, 4, 8, 16):
            for n in (128, 256, 512):
                ids = torch.randint(100, 40000, (b, n))
                t = best(lambda: backbone(input_ids=ids), 3)
                out["backbone"][f"{b}x{n}"] = round(b * n / t)
                t = best(lambda: head(backbone(input_ids=ids).last_hidden_state[:, -1:]), 3)
                out["prefill_last_logits"][f"{b}x{n}"] = round(b * n / t)
            # decode: 16 steps of one token per row after a 512-token context (the KV cache read is the cost)
            ctx = torch.randint(100, 40000, (b, 512))
            step = torch.randint(100, 40000, (b, 1))
            times = []
            for _ in range(3):
                cache = model(input_ids=ctx, use_cache=True).past_key_values
                t = time.perf_counter()
                for _ in range(16):
                    cache = model(input_ids=step, past_key_values=cache, use_cache=True).past_key_values
                times.append(time.perf_counter() - t)
            out["decode_step"][f"{b}x512ctx"] = round(16 * b / min(times))
    for k in out:
        out[k]["best"] = max(v for v in out[k].values())
    return out


def flanlab_phases(precision: str, items: int, workdir: Path) -> dict:
    from flanlab.evaluate.harness import BenchmarkSpec, EvalConfig, run_eval
    res = {}
    for name, spec in (("mmlu_5shot_loglik", BenchmarkSpec(name="mmlu", shots=5, mc_scoring="loglik", limit=items)),
                       ("bbh_3shot_direct", BenchmarkSpec(name="bbh", shots=3, modes=["direct"], limit=items)),
                       ("bbh_3shot_cot", BenchmarkSpec(name="bbh", shots=3, modes=["cot"], limit=1))):
        cfg = EvalConfig(checkpoint="smollm2-135m", output=str(workdir / f"{name}_{precision}"), precision=precision,
                         benchmarks=[spec], max_prompt_len=8192, batch_tokens=65536)
        t = time.perf_counter()
        r = run_eval(cfg).results
        e = r["engine"]
        res[name] = {"items": r["benchmarks"][spec.name][spec.modes[0]]["n"], "wall_seconds": round(
            time.perf_counter() - t, 1), "score": r["benchmarks"][spec.name][spec.modes[0]]["score"],
            "phases": {p: {"seconds": e.get(f"{p}_seconds", 0), "tokens": e.get(f"{p}_tokens", 0),
                           "tokens_per_second": round(e[f"{p}_tokens"] / e[f"{p}_seconds"]) if e.get(
                               f"{p}_seconds") else None} for p in ("loglik", "prefill", "decode")},
            "shared_prefix_tokens": e.get("shared_prefix_tokens", 0)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    from flanlab.evaluate.harness import load_eval_model, EvalConfig
    from flanlab.models.device import usable_precision
    from flanlab.utils import code_version
    model, tok, _ = load_eval_model(EvalConfig(checkpoint="smollm2-135m"))
    bf16 = usable_precision("bf16", torch.device("cpu"), lambda m: None, "eval")
    out = {"command": "python benchmarks/eval_roofline.py " + " ".join(sys.argv[1:]), "code": code_version(),
           "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ") if os.path.exists(
               "/proc/cpuinfo") else "?", "threads": torch.get_num_threads(),
           "matmul_gflops": {"fp32": round(matmul_gflops(torch.float32)), "bf16": round(matmul_gflops(torch.bfloat16))},
           "ceiling": {}, "flanlab": {}}
    precisions = ["fp32"] + (["bf16"] if bf16 == "bf16" else [])
    for p in precisions:
        out["ceiling"][p] = forward_ceiling(model, p)
        print(p, "ceiling", {k: v["best"] for k, v in out["ceiling"][p].items()}, flush=True)
    with tempfile.TemporaryDirectory() as d:
        for p in precisions:
            out["flanlab"][p] = flanlab_phases(p, a.items, Path(d))
            for name, r in out["flanlab"][p].items():
                for ph, v in r["phases"].items():
                    if v["tokens_per_second"]:
                        ceil = out["ceiling"][p]["decode_step" if ph == "decode" else "prefill_last_logits"
                                                  if ph == "prefill" else "backbone"]["best"]
                        v["fraction_of_ceiling"] = round(v["tokens_per_second"] / ceil, 3)
                print(p, name, {ph: (v["tokens_per_second"], v.get("fraction_of_ceiling"))
                                for ph, v in r["phases"].items()}, flush=True)
    f = ROOT / "benchmarks" / "results" / "eval_roofline.json"
    f.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", f)


if __name__ == "__main__":
    main()
