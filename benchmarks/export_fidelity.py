"""How faithful each exported form of a real finetune is: the main job's LoRA finetune of SmolLM2-135M-Instruct
(its mixture and train section, `--steps` steps), exported with `flanlab export` as adapter + merged fp32 and as
merged bf16; for each: file sizes, max |logit diff| against base + adapter (PEFT) on probe prompts, and answer
agreement with flanlab's own final/ model on an MMLU 5-shot and BBH 3-shot direct subset.

    python benchmarks/export_fidelity.py [--steps 30] [--limit 2]   -> benchmarks/results/export_fidelity.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def flanlab(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "flanlab", *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"flanlab {' '.join(args)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def predictions(d: Path) -> dict:
    return {(r["benchmark"], r["id"]): r["answer"] for r in map(json.loads, (d / "predictions.jsonl").open())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--limit", type=int, default=2, help="items per MMLU subject / BBH task")
    args = ap.parse_args()
    import yaml
    from main_job import MAIN, build_main_mixture
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_main_mixture(work / "mix", 1000, "smollm2-135m")
        train = yaml.safe_load(MAIN.read_text())["train"]
        train.update(mixture=str(work / "mix"), output=str(work / "train"), steps=args.steps, tensorboard=False)
        (work / "train.yaml").write_text(yaml.safe_dump({"train": train}))
        flanlab("train", str(work / "train.yaml"), "--no-progress")
        reports = {"fp32": json.loads(flanlab("export", str(work / "train"), str(work / "fp32"))),
                   "bf16": json.loads(flanlab("export", str(work / "train"), str(work / "bf16"), "--merged",
                                              "--dtype", "bf16"))}
        evals = {}
        for name, model in (("final", work / "train" / "final"), ("fp32", work / "fp32"), ("bf16", work / "bf16")):
            flanlab("eval", "-c", str(model), "--tasks", "mmlu,bbh", "--limit", str(args.limit), "-o",
                    str(work / f"eval_{name}"))
            evals[name] = predictions(work / f"eval_{name}")
        agreement = {}
        for name in ("fp32", "bf16"):
            same = sum(evals[name][k] == evals["final"][k] for k in evals["final"])
            agreement[name] = {"identical_answers": same, "items": len(evals["final"])}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"command": "python benchmarks/export_fidelity.py " + " ".join(sys.argv[1:]), "code": commit,
           "steps": args.steps, "exports": {k: {"files": v["files"], "merged_vs_adapter": v.get("merged_vs_adapter")}
                                            for k, v in reports.items()},
           "answers_vs_flanlab_final_on_mmlu_and_bbh_subset": agreement}
    (ROOT / "benchmarks" / "results" / "export_fidelity.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
