"""RealToxicityPrompts and open-ended generation before/after the short Flan finetune, and the tables made from them.

    python benchmarks/toxicity_open_ended.py            # flanlab run examples/smollm2_toxicity_open_ended.yaml, then
    python benchmarks/toxicity_open_ended.py --no-run   # only the tables: from a finished run under runs/ if there
                                                        # is one, else from the committed copies of its evaluations

Writes benchmarks/results/toxicity_open_ended/: the run's summary.md, compare.json / compare.md (`flanlab compare`,
paired over prompts, made by this code), generations.md and .json (the responses side by side), both evaluations' results.json and predictions.jsonl, and
rtp_by_subset.json / .md: each RTP metric per subset (the file a prompt came from) before and after, with the change
and its paired bootstrap 95% CI over that subset's prompts (2000 resamples).
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from flanlab.evaluate.scoring import quantile_ci, stratified_replicates
from flanlab.experiments.compare import read_eval
from flanlab.utils import markdown_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "toxicity_open_ended"
MODES = ("expected_max_toxicity", "toxicity_probability")

ap = argparse.ArgumentParser()
ap.add_argument("--no-run", action="store_true")
ap.add_argument("--run-dir", default=str(ROOT / "runs" / "toxicity_open_ended"))
a = ap.parse_args()
run = Path(a.run_dir)
if not a.no_run:
    subprocess.run([sys.executable, "-m", "flanlab", "run", "examples/smollm2_toxicity_open_ended.yaml", "--output",
                    str(run), "--no-progress"], cwd=ROOT, check=True)
OUT.mkdir(parents=True, exist_ok=True)
if run.is_dir():  # refresh the committed copies from the run; the tables below are made from the copies
    for name in ("summary.md", "generations.md", "generations.json", "run.json"):
        shutil.copyfile(run / name, OUT / name)
    for stage in ("eval_before", "eval_after"):
        (OUT / stage).mkdir(exist_ok=True)
        for name in ("results.json", "predictions.jsonl"):
            shutil.copyfile(run / stage / name, OUT / stage / name)
else:
    print(f"{run} does not exist: the tables are re-derived from the committed evaluations in {OUT}")
table = subprocess.run([sys.executable, "-m", "flanlab", "compare", str(OUT / "eval_before"), str(OUT / "eval_after"),
                        "--names", "before,after", "-o", str(OUT / "compare.json")], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout
(OUT / "compare.md").write_text(table)

(_, before), (_, after) = read_eval(OUT / "eval_before"), read_eval(OUT / "eval_after")
rng = np.random.default_rng(0)
rows, table = [], []
for mode in MODES:
    a_preds = {p["id"]: p for p in before[("rtp", mode)]}
    b_preds = {p["id"]: p for p in after[("rtp", mode)]}
    assert a_preds.keys() == b_preds.keys(), "the two evaluations scored different prompts"
    for group in sorted({p["group"] for p in a_preds.values()}):
        ids = sorted(i for i, p in a_preds.items() if p["group"] == group)
        x = np.array([a_preds[i]["score"] for i in ids]) * 100
        y = np.array([b_preds[i]["score"] for i in ids]) * 100
        reps = stratified_replicates(np.stack([x, y], 1), [group] * len(ids), "micro", 2000, rng)  # paired
        lo, hi = quantile_ci(reps[:, 1] - reps[:, 0])
        row = {"subset": group, "metric": mode, "n": len(ids), "before": round(x.mean(), 1), "after": round(y.mean(), 1),
               "change": round(y.mean() - x.mean(), 1), "ci95": [round(lo, 1), round(hi, 1)]}
        rows.append(row)
        table.append([group, mode.replace("_", " "), row["n"], row["before"], row["after"], f"{row['change']:+.1f}",
                      f"[{lo:+.1f}, {hi:+.1f}]"])
md = markdown_table(["subset", "metric (lower is better)", "prompts", "before", "after", "change", "paired 95% CI"],
                    table)
(OUT / "rtp_by_subset.json").write_text(json.dumps({"rows": rows, "code": json.loads((OUT / "run.json").read_text())
                                                    .get("code")}, indent=1) + "\n")
(OUT / "rtp_by_subset.md").write_text(md)
print(md)
