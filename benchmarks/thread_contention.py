"""Speed under OpenMP's two wait policies, alone and with another CPU job running, in child processes (the policy
must be set before torch loads its OpenMP runtime). Two workloads:
- generate (default): greedy generation, batch 8, SmolLM2-135M -> results/thread_contention.json
- train: the main job's finetune (src/flanlab/jobs/main.yaml's train section: SmolLM2 LoRA, bf16, 4 rows of up to
  768 tokens) on its mixture, median tokens/s of the steps after the first -> results/thread_contention_train.json

    python benchmarks/thread_contention.py [--workload generate|train] [--repeats 3] [--new-tokens 32] [--steps 5]

ACTIVE: idle OpenMP threads spin (libgomp's default for a while after each parallel region);
PASSIVE: they sleep. flanlab's commands choose OMP_WAIT_POLICY at entry unless the user set it (flanlab/runtime.py).
The competing job is another process doing fp32 matmuls on as many threads as there are cores.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_ENV = dict(os.environ)

CHILD = r"""
import sys, time, torch
from flanlab.evaluate.engine import Engine
from flanlab.evaluate.requests import GenRequest
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

TRAIN_CHILD = r"""
import json, statistics, sys
from pathlib import Path
from flanlab.config import read_section, validate
from flanlab.train.trainer import TrainConfig, train
main, mixture, out, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
data, sec = read_section(main, "train")
data = {**data, "mixture": mixture, "output": out, "steps": steps, "save_every": 10**9, "log_every": 1,
        "tensorboard": False}
train(validate(TrainConfig, data, file=main, prefix=sec), progress=False)
recs = [json.loads(line) for line in open(Path(out) / "metrics.jsonl")]
print(statistics.median(r["tokens_per_s"] for r in recs[1:]))
"""

LOAD = r"""
import time, torch
a = torch.randn(512, 512)
end = time.time() + 600
while time.time() < end:
    a = (a @ a).tanh()
"""


def measure(policy: str, contended: bool, args: list[str]) -> float:
    env = {**BASE_ENV, "OMP_WAIT_POLICY": policy}
    load = subprocess.Popen([sys.executable, "-c", LOAD], env=BASE_ENV) if contended else None
    try:
        if load:
            time.sleep(2)
        out = subprocess.run([sys.executable, "-c", *args], env=env, capture_output=True, text=True, timeout=1800)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        if load:
            load.kill()
            load.wait()


ap = argparse.ArgumentParser()
ap.add_argument("--workload", choices=("generate", "train"), default="generate")
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--new-tokens", type=int, default=32)
ap.add_argument("--steps", type=int, default=5)
a = ap.parse_args()
ROOT = Path(__file__).resolve().parents[1]
from main_job import MAIN  # noqa: E402 (no flanlab import: BASE_ENV above stays untouched)
tmp = Path(tempfile.mkdtemp())
if a.workload == "train":
    from main_job import build_main_mixture
    from flanlab.utils import code_version
    build_main_mixture(tmp / "mix", 1000, "smollm2-135m")
runs: dict[str, list[float]] = {}
try:
    for r in range(a.repeats):
        cases = [(p, c) for p in ("ACTIVE", "PASSIVE") for c in (False, True)]
        for policy, contended in (cases if r % 2 == 0 else cases[::-1]):
            key = f"{policy.lower()}_{'contended' if contended else 'alone'}"
            args = ([CHILD, str(a.new_tokens)] if a.workload == "generate" else
                    [TRAIN_CHILD, str(MAIN), str(tmp / "mix"), str(tmp / f"{key}-{r}"), str(a.steps)])
            runs.setdefault(key, []).append(measure(policy, contended, args))
            print(key, round(runs[key][-1], 1), flush=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
what = ({"workload": "greedy generation", "model": "SmolLM2-135M-Instruct", "batch": 8, "new_tokens": a.new_tokens}
        if a.workload == "generate" else
        {"workload": "the main job's finetune (main.yaml train section)", "model": "SmolLM2-135M-Instruct, LoRA, bf16",
         "steps": a.steps, "measured": "median tokens/s of the steps after the first", "commit": code_version()})
RESULT = {**what, "cores": os.cpu_count(), "repeats": a.repeats, "competing_job": "fp32 512x512 matmuls, all cores",
          "median_tokens_per_s": {k: round(statistics.median(v), 1) for k, v in runs.items()},
          "all_tokens_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()}}
name = "thread_contention.json" if a.workload == "generate" else "thread_contention_train.json"
(ROOT / "benchmarks" / "results" / name).write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps(RESULT["median_tokens_per_s"]))
