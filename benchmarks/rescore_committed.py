"""Every committed evaluation scored again by the current rules (`flanlab rescore`, no model), and every committed
comparison recomputed from the rescored copies (`flanlab compare`), printing what moved (old -> new).

    python benchmarks/rescore_committed.py
Rewrites the committed evaluation copies and comparison files in place; writes
benchmarks/results/rescore_committed.json (per comparison: each row's old and new scores, change and CI).
Needs the benchmark files the evaluations ran on (FLANLAB_DATA / ../shared/data): items are rebuilt from the configs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R = ROOT / "benchmarks" / "results"
FLANLAB = [sys.executable, "-m", "flanlab"]

# committed evaluation copy -> the config whose eval section it ran
EVALS = {
    "gemma_flan/eval_before": "examples/gemma_flan.yaml",
    "gemma_flan/eval_after": "examples/gemma_flan.yaml",
    "gemma_flan/eval_after_bf16": "examples/gemma_flan.yaml",
    "gemma_flan/eval_sc": "examples/gemma_flan_sc.yaml",
    "gemma_ablations/eval_base": "examples/gemma_flan.yaml",
    "gemma_ablations/eval_after_gemma_flan_nocot": "examples/gemma_flan_nocot.yaml",
    "gemma_ablations/eval_after_gemma_flan_tasks_cot": "examples/gemma_flan_tasks_cot.yaml",
    "gemma_ablations/eval_after_gemma_flan_tasks_nonniv2": "examples/gemma_flan_tasks_nonniv2.yaml",
    "smollm2_flan/eval_before": "examples/smollm2_flan.yaml",
    "smollm2_flan/eval_after": "examples/smollm2_flan.yaml",
    "smollm2_flan/eval_after_nocot": "examples/smollm2_flan_nocot.yaml",
}
# a run's evaluation -> its committed copy (comparisons recorded the run directories they read)
RUN_COPIES = {
    "runs/gemma_flan/eval_before": "gemma_flan/eval_before", "runs/gemma_flan/eval_after": "gemma_flan/eval_after",
    "runs/gemma_flan/eval_sc": "gemma_flan/eval_sc",
    "runs/smollm2_flan/eval_before": "smollm2_flan/eval_before", "runs/smollm2_flan/eval_after": "smollm2_flan/eval_after",
    "runs/smollm2_flan_nocot/eval_after": "smollm2_flan/eval_after_nocot",
    "runs/gemma_flan_nocot/eval_after": "gemma_ablations/eval_after_gemma_flan_nocot",
    "runs/gemma_flan_tasks_cot/eval_after": "gemma_ablations/eval_after_gemma_flan_tasks_cot",
}
COMPARES = ["gemma_flan/compare.json", "gemma_flan/self_consistency.json", "gemma_flan/precision_bf16_vs_fp32.json",
            "smollm2_flan/compare.json", "smollm2_flan/cot_ablation.json", "gemma_ablations/cot_ablation.json",
            "gemma_ablations/vs_base_gemma_flan.json", "gemma_ablations/vs_base_gemma_flan_tasks_cot.json",
            "gemma_ablations/vs_base_gemma_flan_tasks_nonniv2.json",
            "gemma_ablations/step_gemma_flan_tasks_cot_to_gemma_flan_tasks_nonniv2.json",
            "gemma_ablations/step_gemma_flan_tasks_cot_to_gemma_flan.json",
            "gemma_ablations/step_gemma_flan_tasks_nonniv2_to_gemma_flan.json"]


def committed(path: str) -> Path:
    """The committed copy of an evaluation a comparison names (a run directory or already a copy)."""
    rel = path.split("/work/main/")[-1] if "/work/main/" in path else path
    for run, copy in RUN_COPIES.items():
        if rel.endswith(run):
            return R / copy
    p = (ROOT / rel)
    if p.is_dir():
        return p
    raise SystemExit(f"no committed copy of {path}")


def key(row: dict) -> str:
    return f"{row['benchmark']} {row['mode']}" + (" F1" if row.get("metric") == "f1" else "")


def main() -> None:
    for d, config in EVALS.items():
        print(f"+ flanlab rescore {R / d} {config}", flush=True)
        subprocess.run([*FLANLAB, "rescore", str(R / d), config], cwd=ROOT, check=True, capture_output=True)
    from flanlab.experiments.compare import compare, write_comparison
    from flanlab.utils import code_version
    moved = {}
    for name in COMPARES:
        f = R / name
        old = json.loads(f.read_text())
        a, b = committed(old["a"]), committed(old["b"])
        new = compare(a, b, names=tuple(old["names"]), samples=old["samples"], seed=old["seed"],
                      modes=tuple(old["modes"]) if old.get("modes") else None)
        new.update(a=str(a.relative_to(ROOT)), b=str(b.relative_to(ROOT)))
        write_comparison(new, f)
        before = {key(r): r for r in old["rows"]}
        rows = []
        for r in new["rows"]:
            o = before.get(key(r))
            rows.append({"row": key(r), "old": o and {k: o[k] for k in ("random", "a", "b", "change", "ci95")},
                         "new": {k: r[k] for k in ("random", "a", "b", "change", "ci95")},
                         "unparsed_pct": r.get("unparsed_pct")})
        avg = {"old": old.get("normalized_average"), "new": new.get("normalized_average")}
        moved[name] = {"rows": rows, "normalized_average": avg}
        print(f"\n{name}")
        for x in rows:
            o, n = x["old"], x["new"]
            was = f"{o['a']:.1f} -> {o['b']:.1f}, {o['change']:+.1f} [{o['ci95'][0]:+.1f}, {o['ci95'][1]:+.1f}]" if o \
                else "(new row)"
            print(f"  {x['row']:<28} {was}  =>  {n['a']:.1f} -> {n['b']:.1f}, {n['change']:+.1f} "
                  f"[{n['ci95'][0]:+.1f}, {n['ci95'][1]:+.1f}] (random {n['random']:.1f}; unparsed {x['unparsed_pct']})")
        if avg["old"] and avg["new"]:
            o, n = avg["old"], avg["new"]
            print(f"  {'normalized average':<28} {o['a']:.1f} -> {o['b']:.1f}, {o['change']:+.1f}  =>  {n['a']:.1f} -> "
                  f"{n['b']:.1f}, {n['change']:+.1f} [{n['ci95'][0]:+.1f}, {n['ci95'][1]:+.1f}]")
    (R / "rescore_committed.json").write_text(json.dumps({"command": "python benchmarks/rescore_committed.py",
                                                          "code": code_version(), "comparisons": moved}, indent=1))


if __name__ == "__main__":
    main()
