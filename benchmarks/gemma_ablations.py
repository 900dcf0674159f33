"""gemma-3-270m base: the number-of-finetuning-tasks curve (the paper's Figure 4 shape) and the CoT ablation, on
gemma_flan's evaluation items (benchmarks/gemma_flan.py's committed results in benchmarks/results/gemma_flan/: its
eval_before is every point's base model and its finetune is the full-mixture point). Each mixture has the same
examples, steps and rows.

    python benchmarks/gemma_ablations.py            # the three runs (each resumable), then the tables and the plot
    python benchmarks/gemma_ablations.py --no-runs  # only re-derive them from the runs under runs/ that finished
                                                    # (a curve with a run missing is written labelled partial)

Steps:
  flanlab run examples/gemma_flan_tasks_cot.yaml      -> the 7 CoT tasks only
  flanlab run examples/gemma_flan_tasks_nonniv2.yaml  -> CoT + Muffin + T0-SF (~170 tasks)
  flanlab run examples/gemma_flan_nocot.yaml          -> the full mixture without CoT data
  flanlab compare BASE RUN/eval_after                      (each point vs the base model) -> tasks_curve.json/png
  flanlab compare POINT/eval_after NEXT_POINT/eval_after   (each step along the curve)   -> step_*.json
  flanlab compare runs/gemma_flan_nocot/eval_after GEMMA_FLAN/eval_after                    -> cot_ablation.json
(GEMMA_FLAN = benchmarks/results/gemma_flan; BASE = the base model's evaluation: gemma_flan's re-run one once it
 has finished, copied to eval_base/, else GEMMA_FLAN/eval_before)
"""
from __future__ import annotations

import json

from smollm2_flan import ROOT, cli_args, commit, copy, copy_eval, finished, sh

RESULTS = ROOT / "benchmarks" / "results" / "gemma_ablations"
CURVE = [("gemma_flan_tasks_cot", "CoT only"), ("gemma_flan_tasks_nonniv2", "+ Muffin + T0-SF"),
         ("gemma_flan", "+ NIV2 (full)")]
GEMMA_FLAN = ROOT / "benchmarks" / "results" / "gemma_flan"  # the full-mixture run's committed copies
RUNS = ("gemma_flan_tasks_cot", "gemma_flan_tasks_nonniv2", "gemma_flan_nocot")


def main() -> None:
    a = cli_args()
    runs = ROOT / a.runs_dir
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not a.no_runs:
        for name in RUNS:
            sh("run", f"examples/{name}.yaml", "--output", str(runs / name), "--no-progress")
    prov = {"derived_by": {"commit": commit(), "command": "python benchmarks/gemma_ablations.py --no-runs"}}
    base, prov["base"] = base_eval(runs)
    points, missing = [], []
    for name, label in CURVE:
        files = run_files(runs, name)
        if not finished(files["eval_after"], files["run"]):
            missing.append(name)
            continue
        out = RESULTS / f"vs_base_{name}.json"
        sh("compare", str(base), str(files["eval_after"]), "--names", f"base,{label}", "-o", str(out))
        cmp = json.loads(out.read_text())
        man = json.loads(files["manifest"].read_text())
        run = json.loads(files["run"].read_text())
        rows = {(r["benchmark"], r["mode"]): r for r in cmp["rows"] if r.get("metric", "score") == "score"}
        points.append({"run": name, "label": label, "tasks": len(man["per_task"]), "examples": man["examples"],
                       "train": training(run), "eval_precision": eval_precision(files["eval_after"]),
                       "normalized_average": cmp["normalized_average"],
                       **entries(rows)})
        prov[name] = {"commit": run.get("code", "not recorded"), "command": f"flanlab run examples/{name}.yaml"}
        if files["run"].parent == runs / name:  # a finished run's files, not already committed copies
            publish(name, files)
    # Each step along the curve, paired on the same items: does adding these tasks change the score?
    steps = []
    for lo, hi in zip(points, points[1:]):
        out = RESULTS / f"step_{lo['run']}_to_{hi['run']}.json"
        sh("compare", str(run_files(runs, lo["run"])["eval_after"]), str(run_files(runs, hi["run"])["eval_after"]),
           "--names", f"{lo['label']},{hi['label']}", "-o", str(out))
        cmp = json.loads(out.read_text())
        rows = {(r["benchmark"], r["mode"]): r for r in cmp["rows"] if r.get("metric", "score") == "score"}
        steps.append({"from": lo["run"], "to": hi["run"], "from_label": lo["label"], "to_label": hi["label"],
                      "tasks": [lo["tasks"], hi["tasks"]],
                      "normalized_average": cmp["normalized_average"], **entries(rows)})
    # A curve with a point missing is written all the same, labelled, so a finished run is never left unreported.
    curve = {"complete": not missing, "base": prov["base"], "points": points, "steps": steps, "missing_runs": missing}
    (RESULTS / "tasks_curve.json").write_text(json.dumps(curve, indent=1))
    if points:
        plot(points, missing, RESULTS / "tasks_curve.png")
        (RESULTS / "tasks_curve.md").write_text(table(points, steps, missing, prov["base"]["precision"]))
    nocot = run_files(runs, "gemma_flan_nocot")
    if finished(nocot["eval_after"], nocot["run"]):
        sh("compare", str(nocot["eval_after"]), str(GEMMA_FLAN / "eval_after"),
           "--names", "without CoT data,with CoT data", "-o", str(RESULTS / "cot_ablation.json"))
        run = json.loads(nocot["run"].read_text())
        prov["gemma_flan_nocot"] = {"commit": run.get("code", "not recorded"), "train": training(run),
                                    "command": "flanlab run examples/gemma_flan_nocot.yaml"}
        if nocot["run"].parent == runs / "gemma_flan_nocot":
            publish("gemma_flan_nocot", nocot)
    else:
        (RESULTS / "cot_ablation.json").unlink(missing_ok=True)
        prov["gemma_flan_nocot"] = "not finished: no cot_ablation.json"
    (RESULTS / "provenance.json").write_text(json.dumps(prov, indent=1))
    print(f"tasks curve: {len(points)} of {len(CURVE)} points" + (f" (missing: {', '.join(missing)})" if missing
                                                                  else ""))


def entries(rows: dict) -> dict:
    """A comparison's rows keyed 'benchmark mode': both scores, n, the change and its paired 95% CI."""
    return {f"{b} {m}": {k: r[k] for k in ("n", "a", "b", "change", "ci95")} for (b, m), r in rows.items()}


def table(points: list[dict], steps: list[dict], missing: list[str], base_precision: str) -> str:
    """The curve as markdown: the base model, each point, and each step's paired change (the README's table)."""
    pm = lambda v: f"{v:+.1f}"  # noqa: E731
    head = ["benchmark (n)", f"base (evaluated in {base_precision})"] + [f"{p['label']} ({p['tasks']:,} tasks)" for p in points]
    head += [f"{st['to_label']} − {st['from_label']}, paired 95% CI" for st in steps]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = [k for k in points[0] if isinstance(points[0][k], dict) and "n" in points[0][k]]
    for k in keys + ["normalized_average"]:
        first = points[0][k]
        name = "normalized average (6 entries)" if k == "normalized_average" else f"{k} ({first['n']})"
        cells = [name, f"{first['a']:.1f}"] + [f"{p[k]['b']:.1f}" for p in points]
        cells += [f"{pm(st[k]['change'])} [{pm(st[k]['ci95'][0])}, {pm(st[k]['ci95'][1])}]" for st in steps]
        lines.append("| " + " | ".join(cells) + " |")
    train = "; ".join(f"{p['label']}: {p['train']['precision']}, {p['train']['steps']} steps, final loss "
                      f"{p['train']['final_loss']:.3f}, {p['train']['seconds']:,.0f} s; evaluated in {p['eval_precision']}"
                      for p in points)
    lines += ["", f"Training: {train}."]
    if missing:
        lines += ["", f"PARTIAL: not finished: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def base_eval(runs) -> tuple:
    """The base model's evaluation every point is compared with, and where it came from: gemma_flan's re-run
    evaluation of it once finished (runs/gemma_flan/eval_before, which `flanlab eval examples/gemma_flan.yaml -c
    gemma3-270m -o runs/gemma_flan/eval_before` can make ahead of the run; copied to eval_base/ here), else the
    committed copy, else gemma_flan's committed eval_before."""
    fresh, dest = runs / "gemma_flan" / "eval_before", RESULTS / "eval_base"
    if (fresh / "results.json").is_file():
        copy_eval(fresh, dest)
    if (dest / "results.json").is_file():
        res = json.loads((dest / "results.json").read_text())
        return dest, {"eval": "eval_base/", "commit": res.get("code"), "precision": res.get("precision"),
                      "command": "flanlab eval examples/gemma_flan.yaml -c gemma3-270m"}
    return GEMMA_FLAN / "eval_before", {"eval": "../gemma_flan/eval_before/", "precision": eval_precision(
        GEMMA_FLAN / "eval_before")}


def eval_precision(eval_dir) -> str:
    """The precision an evaluation ran in (results.json; older ones predate the field)."""
    return json.loads((eval_dir / "results.json").read_text()).get("precision") or "not recorded"


def training(run: dict) -> dict:
    """How a point was trained, for the reader to weigh: the precision actually used (a CPU without bf16 falls back
    to fp32), steps, final loss and wall time."""
    t = run.get("train", {})
    return {k: t.get(k) for k in ("precision", "steps", "final_loss", "seconds")}


def publish(name: str, files: dict) -> None:
    """A finished run's committed copies: training log, run.json (timings, peak RSS), results and every prediction."""
    copy(files["metrics"], RESULTS / f"train_metrics_{name}.jsonl")
    copy(files["run"], RESULTS / f"run_{name}.json")
    copy(files["manifest"], RESULTS / f"mixture_manifest_{name}.json")
    copy_eval(files["eval_after"], RESULTS / f"eval_after_{name}")


def run_files(runs, name: str) -> dict:
    """What a curve point is read from: a finished run under runs/, else its committed copies (gemma_flan's in
    benchmarks/results/gemma_flan, the others' here), so a clone without the runs re-derives every table."""
    if name == "gemma_flan":
        return {"eval_after": GEMMA_FLAN / "eval_after", "manifest": GEMMA_FLAN / "mixture_manifest.json",
                "run": GEMMA_FLAN / "run.json", "metrics": GEMMA_FLAN / "train_metrics.jsonl"}
    run = runs / name
    files = {"eval_after": run / "eval_after", "manifest": run / "mixture" / "manifest.json", "run": run / "run.json",
             "metrics": run / "train" / "metrics.jsonl"}
    if finished(files["eval_after"], files["run"]):
        return files
    return {"eval_after": RESULTS / f"eval_after_{name}", "manifest": RESULTS / f"mixture_manifest_{name}.json",
            "run": RESULTS / f"run_{name}.json", "metrics": RESULTS / f"train_metrics_{name}.jsonl"}


def plot(points: list[dict], missing: list[str], path) -> None:
    """Change vs the base model (paired 95% CI) against the number of finetuning tasks, log-scaled like Figure 4."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    x = [p["tasks"] for p in points]
    series = [("normalized average", [p["normalized_average"] for p in points])]
    series += [(k, [p.get(k) for p in points]) for k in ("mmlu direct", "bbh direct", "bbh_0shot direct", "bbh_cot cot",
                                                       "tydiqa direct")]
    for i, (name, vals) in enumerate(series):
        if any(v is None for v in vals):
            continue
        xs = [t * (1 + 0.04 * (i - 2.5)) for t in x]  # a small offset so the error bars do not overlap
        y = [v["change"] for v in vals]
        err = [[v["change"] - v["ci95"][0] for v in vals], [v["ci95"][1] - v["change"] for v in vals]]
        ax.errorbar(xs, y, yerr=err, marker="o", capsize=3, label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(x, [f"{p['tasks']}\n{p['label']}" for p in points])
    ax.set_xlabel("finetuning tasks in the mixture")
    ax.set_ylabel("change vs base model (points), paired 95% CI")
    title = "gemma-3-270m: held-out change vs number of finetuning tasks"
    if missing:
        title += f"\nPARTIAL: {len(points)} of {len(CURVE)} points (not finished: {', '.join(missing)})"
    ax.set_title(title, fontsize=9 if missing else None)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
