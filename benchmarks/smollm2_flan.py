"""SmolLM2-135M-Instruct before/after an offline Flan 2022 finetune (Table 5's layout) and the CoT ablation, and
every table and plot under benchmarks/results/smollm2_flan/ derived from them.

    python benchmarks/smollm2_flan.py            # both runs (about 50 + 45 minutes on 2 cores), then the tables
    python benchmarks/smollm2_flan.py --no-runs  # only re-derive the tables from finished runs under runs/

Steps (each a flanlab CLI command, printed as it runs):
  flanlab run examples/smollm2_flan.yaml          -> runs/smollm2_flan (mix, LoRA finetune, eval before + after)
  flanlab run examples/smollm2_flan_nocot.yaml    -> runs/smollm2_flan_nocot (no CoT submixture, eval after)
  flanlab compare runs/smollm2_flan/eval_before runs/smollm2_flan/eval_after          -> compare.json
  flanlab compare runs/smollm2_flan_nocot/eval_after runs/smollm2_flan/eval_after      -> cot_ablation.json
  flanlab report runs/smollm2_flan                -> before_after.png, loss.png
and copies what the tables are made from (results, predictions, manifests, training logs) into the results folder,
with the commit each run's code came from (provenance.json).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "smollm2_flan"
FLANLAB = [sys.executable, "-m", "flanlab"]
RUNS = {"smollm2_flan": "examples/smollm2_flan.yaml", "smollm2_flan_nocot": "examples/smollm2_flan_nocot.yaml"}


def sh(*args: str) -> None:
    print("+ flanlab", " ".join(args), flush=True)
    subprocess.run([*FLANLAB, *args], cwd=ROOT, check=True)


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def cli_args():
    """--no-runs (derive the tables from finished runs only) and --runs-dir, shared by the experiment scripts."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-runs", action="store_true", help="derive the tables from finished runs only")
    ap.add_argument("--runs-dir", default="runs")
    return ap.parse_args()


def copy_run(run: Path, dest: Path, suffix: str = "", stages=("eval_before", "eval_after")) -> None:
    """What a run's tables are made from: run.json, the mixture manifest, the training log, each evaluation's
    results and predictions."""
    copy(run / "run.json", dest / f"run{suffix}.json")
    copy(run / "mixture" / "manifest.json", dest / f"mixture_manifest{suffix}.json")
    copy(run / "train" / "metrics.jsonl", dest / f"train_metrics{suffix}.jsonl")
    for stage in stages:
        for f in ("results.json", "predictions.jsonl", "results.md"):
            if (run / stage / f).is_file():
                copy(run / stage / f, dest / f"{stage}{suffix}" / f)


def report_plots(run: Path, dest: Path) -> None:
    """flanlab report RUN, and its plots copied beside the tables."""
    sh("report", str(run))
    for f in ("before_after.png", "loss.png", "report.md"):
        copy(run / f, dest / f)


def main() -> None:
    a = cli_args()
    runs = ROOT / a.runs_dir
    prov = json.loads((RESULTS / "provenance.json").read_text()) if (RESULTS / "provenance.json").is_file() else {}
    for name, config in RUNS.items():
        if not a.no_runs:
            sh("run", config, "--output", str(runs / name), "--no-progress")
        code = json.loads((runs / name / "run.json").read_text()).get("code")  # the commit the run's code came from
        prov[name] = {"commit": code or prov.get(name, {}).get("commit", "not recorded"),
                      "command": f"flanlab run {config}"}
    main_run, nocot = runs / "smollm2_flan", runs / "smollm2_flan_nocot"
    sh("compare", str(main_run / "eval_before"), str(main_run / "eval_after"), "--names", "before,after",
       "-o", str(RESULTS / "compare.json"))
    sh("compare", str(nocot / "eval_after"), str(main_run / "eval_after"), "--names", "without CoT data,with CoT data",
       "-o", str(RESULTS / "cot_ablation.json"))
    copy_run(main_run, RESULTS)
    copy_run(nocot, RESULTS, "_nocot")
    report_plots(main_run, RESULTS)
    prov["derived_by"] = {"commit": commit(), "command": "python benchmarks/smollm2_flan.py --no-runs"}
    (RESULTS / "provenance.json").write_text(json.dumps(prov, indent=1))


if __name__ == "__main__":
    main()
