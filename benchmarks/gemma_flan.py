"""The paper's Table 5 on a pretrained base model: gemma-3-270m before vs after Flan finetuning, and self-consistency
vs greedy CoT after it; every table and plot under benchmarks/results/gemma_flan/ derived from them.

    make install-gemma                         # once: the base model (Gemma Terms of Use)
    python benchmarks/gemma_flan.py            # the run and the self-consistency evaluation, then the tables
    python benchmarks/gemma_flan.py --no-runs  # only re-derive the tables from finished runs under runs/
    python benchmarks/gemma_flan.py --before benchmarks/results/gemma_ablations/eval_base
        # the base model's committed evaluation as "before" instead of a second hour-long one: accepted only if it
        # ran the same evaluation code and config on the same checkpoint in the same precision (checked)

Steps (each a flanlab CLI command, printed as it runs; an interrupted one resumes where it stopped):
  flanlab run examples/gemma_flan.yaml                                    -> runs/gemma_flan (mix, train, eval x2)
  flanlab eval examples/gemma_flan_sc.yaml -c runs/gemma_flan/train/final -> runs/gemma_flan/eval_sc
  flanlab compare runs/gemma_flan/eval_before runs/gemma_flan/eval_after  -> compare.json
  flanlab compare runs/gemma_flan/eval_sc runs/gemma_flan/eval_sc --modes cot,cot_sc -> self_consistency.json
  flanlab report runs/gemma_flan                                          -> before_after.png, loss.png
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from smollm2_flan import ROOT, cli_parser, commit, copy_eval, copy_run, report_plots, sh

RESULTS = ROOT / "benchmarks" / "results" / "gemma_flan"
CONFIG = "examples/gemma_flan.yaml"
CHECKPOINT = "gemma3-270m"  # CONFIG's train.model.checkpoint: what "before" evaluates
# The code an evaluation's answers come from: all of flanlab but what only reads finished evaluations.
EVAL_CODE = ("src/flanlab", ":(exclude)src/flanlab/experiments/report.py", ":(exclude)src/flanlab/experiments/compare.py")


def fail(msg: str, file: Path) -> None:
    print(f"error: {file}: {msg}", file=sys.stderr)
    sys.exit(2)


def eval_section(commit_: str) -> dict | None:
    """CONFIG's eval section at a commit, without its precision (the precision an evaluation actually ran in is in
    its results.json: bf16 falls back to fp32 on a CPU without it)."""
    import yaml
    text = subprocess.run(["git", "show", f"{commit_}:{CONFIG}"], cwd=ROOT, capture_output=True, text=True)
    if text.returncode:
        return None
    section = dict(yaml.safe_load(text.stdout).get("eval", {}))
    section.pop("precision", None)
    return section


def same_eval_inputs(code: str, ref: str) -> bool:
    """Whether commits `code` and `ref` hold the same evaluation code (EVAL_CODE) and CONFIG eval section but for
    its precision (a "-dirty" commit never does)."""
    if code.endswith("-dirty") or ref.endswith("-dirty"):
        return False
    same_src = subprocess.run(["git", "diff", "--quiet", code, ref, "--", *EVAL_CODE], cwd=ROOT).returncode == 0
    if not same_src:
        return False
    section = eval_section(code)
    return section is not None and section == eval_section(ref)


def check_before(before: Path, ref: str, precision: str | None = None) -> dict:
    """The results.json of a base-model evaluation that may stand in for the run's own "before": same checkpoint,
    evaluation code and config as commit `ref` (and the same precision as the evaluation after, once known)."""
    try:
        res = json.loads((before / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        fail(f"not a finished evaluation ({e})", before / "results.json")
    if res.get("checkpoint") != CHECKPOINT:
        fail(f"field checkpoint is {res.get('checkpoint')!r}, not {CHECKPOINT!r} (the base model {CONFIG} finetunes)",
             before / "results.json")
    if not same_eval_inputs(res.get("code", "not recorded"), ref):
        fail(f"field code {res.get('code')!r}: its src/flanlab or {CONFIG} eval section differ from those at {ref} "
             "(or it is not a commit): evaluate the base model again instead", before / "results.json")
    if precision is not None and res.get("precision") != precision:
        fail(f"field precision is {res.get('precision')!r} but the evaluation after finetuning ran in {precision!r}: "
             "a paired comparison needs both in one precision", before / "results.json")
    return res


def main() -> None:
    ap = cli_parser()
    ap.add_argument("--before", type=Path, help="a finished evaluation of the base model (flanlab eval "
                    f"{CONFIG} -c {CHECKPOINT}) to copy to RUN/eval_before instead of running the run's own")
    a = ap.parse_args()
    run = ROOT / a.runs_dir / "gemma_flan"
    final, sc = run / "train" / "final", run / "eval_sc"
    if not a.no_runs:
        if a.before:
            check_before(a.before, commit())  # before hours of training, not after
            sh("run", CONFIG, "baseline=false", "--output", str(run), "--no-progress")
            after = json.loads((run / "eval_after" / "results.json").read_text())
            check_before(a.before, after["code"], after.get("precision"))
            adopt_before(a.before, run / "eval_before")
        else:
            sh("run", CONFIG, "--output", str(run), "--no-progress")
        sh("eval", "examples/gemma_flan_sc.yaml", "-c", str(final), "--output", str(sc))
    prov = {"gemma_flan": {"commit": json.loads((run / "run.json").read_text()).get("code", "not recorded"),
                           "command": f"flanlab run {CONFIG}"},
            "eval_before": before_provenance(run / "eval_before")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    sh("compare", str(run / "eval_before"), str(run / "eval_after"), "--names", "before,after",
       "-o", str(RESULTS / "compare.json"))
    if (sc / "results.json").is_file():
        res = json.loads((sc / "results.json").read_text())
        prov["eval_sc"] = {"commit": res.get("code", "not recorded"), "seconds": res.get("seconds"),
                           "command": "flanlab eval examples/gemma_flan_sc.yaml -c runs/gemma_flan/train/final"}
        sh("compare", str(sc), str(sc), "--modes", "cot,cot_sc", "--names", "greedy CoT,self-consistency (k=8)",
           "-o", str(RESULTS / "self_consistency.json"))
    else:  # not finished: no file of an older run is left to be read as this one's
        prov["eval_sc"] = "not finished: no self_consistency.json"
        (RESULTS / "self_consistency.json").unlink(missing_ok=True)
        shutil.rmtree(RESULTS / "eval_sc", ignore_errors=True)
    copy_run(run, RESULTS, stages=("eval_before", "eval_after", "eval_sc"))
    report_plots(run, RESULTS)
    prov["derived_by"] = {"commit": commit(), "command": "python benchmarks/gemma_flan.py --no-runs"}
    (RESULTS / "provenance.json").write_text(json.dumps(prov, indent=1))


def adopt_before(src: Path, dest: Path) -> None:
    """The checked base-model evaluation as the run's eval_before, with a note of where it came from."""
    copy_eval(src, dest)
    (dest / "origin.json").write_text(json.dumps({"copied_from": str(src.resolve().relative_to(ROOT)),
                                                  "checked_by": "benchmarks/gemma_flan.py check_before"}))


def before_provenance(before: Path) -> dict:
    """Commit, precision and command of the evaluation before finetuning, and where it was copied from if it was."""
    res = json.loads((before / "results.json").read_text())
    prov = {"commit": res.get("code", "not recorded"), "precision": res.get("precision"), "seconds": res.get("seconds"),
            "command": f"flanlab eval {CONFIG} -c {CHECKPOINT}"}
    if (before / "origin.json").is_file():
        prov.update(json.loads((before / "origin.json").read_text()))
    return prov


if __name__ == "__main__":
    main()
