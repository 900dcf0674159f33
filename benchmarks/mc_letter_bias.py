"""Is there knowledge under a multiple-choice score near chance? From committed predictions only (no model run):
for each evaluation's log-likelihood-scored multiple-choice rows (MMLU direct), how much the predicted letters
collapse onto one letter, how many items tie at the top option, and the accuracy once each letter's mean
log-likelihood over the benchmark's items is subtracted (a letter-prior correction in the spirit of contextual
calibration, Zhao et al. 2021; fitted on the same items, so read it as an upper bound), with 95% bootstrap CIs.

    python benchmarks/mc_letter_bias.py                 # the committed gemma-3-270m evaluations
    python benchmarks/mc_letter_bias.py EVAL_DIR ...    # any evaluations (folders with predictions.jsonl)
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from smollm2_flan import ROOT, commit

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT = ["gemma_flan/eval_after", "gemma_flan/eval_after_bf16", "gemma_ablations/eval_base",
           "gemma_ablations/eval_after_gemma_flan_tasks_cot", "gemma_ablations/eval_after_gemma_flan_tasks_nonniv2",
           "gemma_ablations/eval_after_gemma_flan_nocot"]


def bias(rows: list[dict], rng: np.random.Generator, n_boot: int = 2000) -> dict:
    """One benchmark's multiple-choice rows: accuracy raw and letter-prior-corrected, letter shares, top ties."""
    ll = np.array([r["option_logliks"] for r in rows], float)
    gold = np.array(["ABCDEFGHIJ".index(r["golds"][0]) for r in rows])
    pred = np.array(["ABCDEFGHIJ".index(r["answer"]) for r in rows])
    top = np.sort(ll, axis=1)
    corrected = (ll - ll.mean(axis=0)).argmax(axis=1)
    raw_ok, cor_ok = (pred == gold).astype(float), (corrected == gold).astype(float)
    draws = rng.integers(0, len(rows), size=(n_boot, len(rows)))
    ci = lambda v: [round(float(x) * 100, 1) for x in np.percentile(v[draws].mean(axis=1), [2.5, 97.5])]  # noqa: E731
    letters = collections.Counter("ABCDEFGHIJ"[i] for i in pred)
    return {"n": len(rows), "accuracy": round(raw_ok.mean() * 100, 1), "accuracy_ci95": ci(raw_ok),
            "prior_corrected_accuracy": round(cor_ok.mean() * 100, 1), "prior_corrected_ci95": ci(cor_ok),
            "most_predicted_letter_share": round(max(letters.values()) / len(rows) * 100, 1),
            "predicted_letters": dict(sorted(letters.items())),
            "gold_letters": dict(sorted(collections.Counter(r["golds"][0] for r in rows).items())),
            "top_option_ties": int((top[:, -1] == top[:, -2]).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("evals", nargs="*", default=None)
    ap.add_argument("-o", "--out", default=str(RESULTS / "mc_letter_bias.json"))
    a = ap.parse_args()
    dirs = [Path(d) for d in a.evals] if a.evals else [RESULTS / d for d in DEFAULT if (RESULTS / d).is_dir()]
    out = {"commit": commit(), "command": "python benchmarks/mc_letter_bias.py" + "".join(f" {d}" for d in a.evals),
           "evaluations": {}}
    lines = ["| evaluation | benchmark | n | accuracy | letter-prior corrected | most predicted letter | top ties |",
             "|---|---|---|---|---|---|---|"]
    for d in dirs:
        rows = [json.loads(line) for line in (d / "predictions.jsonl").open(encoding="utf-8")]
        by = collections.defaultdict(list)
        for r in rows:
            if r.get("option_logliks"):
                by[r["benchmark"]].append(r)
        name = str(d.relative_to(RESULTS)) if d.is_relative_to(RESULTS) else str(d)
        precision = json.loads((d / "results.json").read_text()).get("precision") or "not recorded"
        out["evaluations"][name] = {"precision": precision}
        for bench, rs in sorted(by.items()):
            b = bias(rs, np.random.default_rng(0))
            out["evaluations"][name][bench] = b
            lines.append(f"| {name} ({precision}) | {bench} | {b['n']} | {b['accuracy']} {b['accuracy_ci95']} | "
                         f"{b['prior_corrected_accuracy']} {b['prior_corrected_ci95']} | "
                         f"{b['most_predicted_letter_share']}% | {b['top_option_ties']} |")
    Path(a.out).write_text(json.dumps(out, indent=1))
    Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
