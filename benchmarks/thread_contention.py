"""Greedy generation speed (batch 8, SmolLM2-135M) under OpenMP's two wait policies, alone and with another
CPU job running, in child processes (the policy must be set before torch loads its OpenMP runtime).

    python benchmarks/thread_contention.py [--repeats 3] [--new-tokens 32]

ACTIVE: idle OpenMP threads spin (libgomp's default for a while after each parallel region);
PASSIVE: they sleep. flanlab's CLI sets OMP_WAIT_POLICY=PASSIVE unless the user set it (flanlab/__init__.py).
The competing job is another process doing fp32 matmuls on as many threads as there are cores.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time, torch
from flanlab.evaluate.engine import Engine, GenRequest
from flanlab.models.build import ModelSpec, build_model
model, tok = build_model(ModelSpec(checkpoint="smollm2-135m"))
model.eval(); model.config.use_cache = True
prompts = [f"Question {i}: name a city in Europe and say one thing about it.\nAnswer:" for i in range(8)]
engine = Engine(model, tok, min_shared_prefix=10**9)
engine.generate([GenRequest(p, max_new_tokens=4) for p in prompts])  # warm-up
t = time.time()
out = engine.generate([GenRequest(p, max_new_tokens=int(sys.argv[1])) for p in prompts])
print(engine.stats["generated_tokens"] / (time.time() - t) if engine.stats.get("generated_tokens") else
      8 * int(sys.argv[1]) / (time.time() - t))
"""

LOAD = r"""
import time, torch
a = torch.randn(512, 512)
end = time.time() + 600
while time.time() < end:
    a = (a @ a).tanh()
"""


def measure(policy: str, contended: bool, new_tokens: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    load = subprocess.Popen([sys.executable, "-c", LOAD], env={**os.environ}) if contended else None
    try:
        if load:
            time.sleep(2)
        out = subprocess.run([sys.executable, "-c", CHILD, str(new_tokens)], env=env, capture_output=True, text=True,
                             timeout=900)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        if load:
            load.kill()
            load.wait()


ap = argparse.ArgumentParser()
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--new-tokens", type=int, default=32)
a = ap.parse_args()
runs: dict[str, list[float]] = {}
for r in range(a.repeats):
    cases = [(p, c) for p in ("ACTIVE", "PASSIVE") for c in (False, True)]
    for policy, contended in (cases if r % 2 == 0 else cases[::-1]):
        key = f"{policy.lower()}_{'contended' if contended else 'alone'}"
        runs.setdefault(key, []).append(measure(policy, contended, a.new_tokens))
        print(key, round(runs[key][-1], 1), flush=True)
RESULT = {"model": "SmolLM2-135M-Instruct", "batch": 8, "new_tokens": a.new_tokens, "cores": os.cpu_count(),
          "repeats": a.repeats, "median_tokens_per_s": {k: round(statistics.median(v), 1) for k, v in runs.items()},
          "all_tokens_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()}}
out = Path(__file__).resolve().parent / "results" / "thread_contention.json"
out.write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps(RESULT["median_tokens_per_s"]))
