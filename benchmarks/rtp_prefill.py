"""Sampling cost of the RealToxicityPrompts protocol with and without a shared prefill: the k = 25 samples of a prompt
as one request of n = 25 (one prefill, its KV cache repeated per sample: what flanlab does) vs 25 requests of n = 1
each prefilled on its own (prefix sharing off). SmolLM2-135M-Instruct, the first prompts of the real nontoxic subset,
nucleus p = 0.9, temperature 1, 20 new tokens; interleaved repeats, fresh engines (no answer cache); the prefill
forwards counted by a forward hook on the model.

    python benchmarks/rtp_prefill.py [--prompts 16] [--repeats 2]     # -> benchmarks/results/rtp_prefill.json
"""
import argparse
import json
import statistics
import time
from pathlib import Path

from flanlab.datapaths import data_root
from flanlab.evaluate.engine import Engine
from flanlab.evaluate.requests import GenRequest
from flanlab.evaluate.rtp import load_rtp
from flanlab.models.build import ModelSpec, build_model
from flanlab.utils import code_version

ap = argparse.ArgumentParser()
ap.add_argument("--prompts", type=int, default=16)
ap.add_argument("--samples", type=int, default=25)
ap.add_argument("--repeats", type=int, default=2)
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]

bench = load_rtp(data_root(required=True) / "rtp" / "nontoxic.jsonl", limit=a.prompts)
prompts = [it.prompts["sample"] for it in bench.items]
model, tok = build_model(ModelSpec(checkpoint="smollm2-135m"))
model.config.use_cache = True
calls = {"prefill_tokens": 0}


def count(module, args, kwargs):  # prompt tokens entering the model (decode steps add one token per row)
    ids = kwargs.get("input_ids")
    if ids is not None and ids.shape[1] > 1:
        calls["prefill_tokens"] += int(ids.numel())
model.register_forward_pre_hook(count, with_kwargs=True)


def run(shared: bool) -> tuple[float, int]:
    kw = dict(temperature=1.0, top_p=0.9, max_new_tokens=20)
    if shared:
        reqs = [GenRequest(p, n=a.samples, seed=0, **kw) for p in prompts]
    else:
        reqs = [GenRequest(p, n=1, seed=s, **kw) for p in prompts for s in range(a.samples)]
    engine = Engine(model, tok, min_shared_prefix=64 if shared else 0, batch_tokens=65536)
    calls["prefill_tokens"] = 0
    t = time.time()
    engine.generate(reqs)
    return len(prompts) * a.samples / (time.time() - t), calls["prefill_tokens"]


run(True)  # warm-up
rates = {"shared_prefill": [], "separate_prefills": []}
prefill = {}
for r in range(a.repeats):
    for shared in ((True, False) if r % 2 == 0 else (False, True)):
        key = "shared_prefill" if shared else "separate_prefills"
        sps, tokens = run(shared)
        rates[key].append(round(sps, 2))
        prefill[key] = tokens
        print(key, round(sps, 2), "samples/s,", tokens, "prefill tokens", flush=True)
med = {k: statistics.median(v) for k, v in rates.items()}
RESULT = {"commit": code_version(), "model": "SmolLM2-135M-Instruct", "prompts": len(prompts), "samples": a.samples,
          "decoding": "nucleus p=0.9, temperature 1, 20 new tokens", "repeats": a.repeats,
          "median_samples_per_s": {k: round(v, 2) for k, v in med.items()},
          "speedup": round(med["shared_prefill"] / med["separate_prefills"], 2),
          "all_samples_per_s": rates, "prefill_tokens": prefill}
(ROOT / "benchmarks" / "results" / "rtp_prefill.json").write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k != "all_samples_per_s"}))
