"""SmolLM2-135M-Instruct before/after an offline Flan 2022 finetune (Table 5's layout) and the CoT ablation, and
every table and plot under benchmarks/results/smollm2_flan/ derived from them.

    python benchmarks/smollm2_flan.py            # both runs (each resumable; wall times in their run.json), then the tables
    python benchmarks/smollm2_flan.py --no-runs  # only re-derive the tables from finished runs under runs/
                                                 # (with the no-CoT run unfinished: the before/after alone)

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


def copy_eval(src: Path, dest: Path) -> None:
    """An evaluation's committed copy: its results and every prediction (what flanlab compare pairs)."""
    for f in ("results.json", "predictions.jsonl"):
        copy(src / f, dest / f)


def cli_parser() -> argparse.ArgumentParser:
    """--no-runs (derive the tables from finished runs only) and --runs-dir, shared by the experiment scripts."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-runs", action="store_true", help="derive the tables from finished runs only")
    ap.add_argument("--runs-dir", default="runs")
    return ap


def cli_args():
    return cli_parser().parse_args()


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
    prov = {"derived_by": {"commit": commit(), "command": "python benchmarks/smollm2_flan.py --no-runs"}}
    if not a.no_runs:
        for name, config in RUNS.items():
            sh("run", config, "--output", str(runs / name), "--no-progress")
    main_run, nocot = runs / "smollm2_flan", runs / "smollm2_flan_nocot"
    if not finished(main_run / "eval_after", main_run / "run.json"):
        sys.exit(f"{main_run} has not finished (no eval_after/results.json or run.json): nothing derived")
    sh("compare", str(main_run / "eval_before"), str(main_run / "eval_after"), "--names", "before,after",
       "-o", str(RESULTS / "compare.json"))
    copy_run(main_run, RESULTS)
    report_plots(main_run, RESULTS)
    prov["smollm2_flan"] = provenance(main_run, RUNS["smollm2_flan"])
    # The CoT ablation is written only from a finished run; otherwise no file of an older one is left beside it.
    if finished(nocot / "eval_after", nocot / "run.json"):
        sh("compare", str(nocot / "eval_after"), str(main_run / "eval_after"), "--names",
           "without CoT data,with CoT data", "-o", str(RESULTS / "cot_ablation.json"))
        copy_run(nocot, RESULTS, "_nocot")
        prov["smollm2_flan_nocot"] = provenance(nocot, RUNS["smollm2_flan_nocot"])
    else:
        for f in ("cot_ablation.json", "run_nocot.json", "mixture_manifest_nocot.json", "train_metrics_nocot.jsonl"):
            (RESULTS / f).unlink(missing_ok=True)
        shutil.rmtree(RESULTS / "eval_after_nocot", ignore_errors=True)
        prov["smollm2_flan_nocot"] = "not finished: no cot_ablation.json"
    (RESULTS / "provenance.json").write_text(json.dumps(prov, indent=1))


def finished(eval_after: Path, run_json: Path) -> bool:
    """A run counts once its evaluation after finetuning has written its results (run.json comes after it)."""
    return (eval_after / "results.json").is_file() and run_json.is_file()


def provenance(run: Path, config: str) -> dict:
    """The commit a run's code came from (its run.json), and the command that made it."""
    code = json.loads((run / "run.json").read_text()).get("code", "not recorded")
    return {"commit": code, "command": f"flanlab run {config}"}


if __name__ == "__main__":
    main()
