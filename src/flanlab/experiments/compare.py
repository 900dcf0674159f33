"""`flanlab compare A B`: two evaluations of the same items, paired.

For every (benchmark, prompting) both evaluations hold, the change B - A is the difference of the two scores as
the benchmark aggregates them (micro over items, or macro over tasks / subjects / languages), and its 95% CI comes
from a bootstrap that resamples items within their task and recomputes that same difference, so the change and its
CI are one quantity. The paper's normalized average (six entries) is compared the same way: each replicate
recomputes all six entries of both evaluations and the difference of their averages.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FlanlabError
from ..evaluate.harness import EvalResult
from ..evaluate.scoring import (PAPER_ENTRIES, PROMPTING_NAMES, aggregate_weights, answer_form_ok, entry_of,
                                normalized_score, quantile_ci, stratified_replicates)
from ..utils import atomic_write_text, markdown_table


def by_mode(predictions: list[dict]) -> dict:
    """{(label, mode): [prediction, ...]} in the order given."""
    preds: dict = {}
    for p in predictions:
        preds.setdefault((p["benchmark"], p["mode"]), []).append(p)
    return preds


def read_eval(path: "str | Path | EvalResult") -> tuple[dict, dict]:
    """(results.json, {(label, mode): [prediction, ...]}) of an evaluation output directory, or of an evaluation
    this process just ran (nothing read back from disk)."""
    if isinstance(path, EvalResult):
        return path.results, by_mode(path.predictions)
    path = Path(path)
    res_file, pred_file = path / "results.json", path / "predictions.jsonl"
    for f in (res_file, pred_file):
        if not f.is_file():
            raise FlanlabError("not an evaluation output (flanlab eval writes results.json and predictions.jsonl)",
                               file=f)
    try:
        results = json.loads(res_file.read_text(encoding="utf-8"))
        preds = by_mode([json.loads(line) for line in pred_file.read_text(encoding="utf-8").splitlines()])
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise FlanlabError(f"unreadable evaluation output: {e}", file=path) from None
    return results, preds


def _aggregate_of(result: dict, preds: list[dict]) -> str:
    """micro or macro: as recorded, else the one that reproduces the recorded score (older results files)."""
    if result.get("aggregate") in ("micro", "macro"):
        return result["aggregate"]
    v = np.array([p["score"] for p in preds], float) * 100
    groups = [p["group"] for p in preds]
    return min(("macro", "micro"), key=lambda h: abs(float(v @ aggregate_weights(groups, h)) - result["score"]))


def _unparsed_pct(preds: list[dict]) -> float:
    """% of answers empty or not in their golds' form (predictions written before this was recorded: computed)."""
    ok = [p.get("answer_form_ok", answer_form_ok(str(p.get("answer", "")), p["golds"])) for p in preds]
    return round(100 * (1 - float(np.mean(ok))), 2) if ok else 0.0


def _paired(a_preds: list[dict], b_preds: list[dict], label: str, mode: str, b_dir, metric: str = "score"
            ) -> tuple[list, np.ndarray]:
    """Item groups and an items x 2 score matrix, B aligned to A's items; refuses different item sets."""
    b_by_id = {p["id"]: p for p in b_preds}
    a_ids = [p["id"] for p in a_preds]
    if len(b_by_id) != len(b_preds) or set(a_ids) != set(b_by_id):
        only_a, only_b = len(set(a_ids) - set(b_by_id)), len(set(b_by_id) - set(a_ids))
        raise FlanlabError(f"{label} {mode}: the evaluations hold different items ({len(a_ids)} vs {len(b_preds)}; "
                           f"{only_a} only in the first, {only_b} only in the second): a paired comparison needs the "
                           "same items", file=b_dir, field=f"{label}.{mode}")
    for p in a_preds:
        if list(p["golds"]) != list(b_by_id[p["id"]]["golds"]):
            raise FlanlabError(f"{label} {mode}: item {p['id']} has different gold answers in the two evaluations",
                               file=b_dir, field=f"{label}.{mode}")
    scores = np.array([[p[metric], b_by_id[p["id"]][metric]] for p in a_preds], float)
    return [p["group"] for p in a_preds], scores


def compare(a_dir: "str | Path | EvalResult", b_dir: "str | Path | EvalResult", *,
            names: tuple[str, str] | None = None, samples: int = 2000, seed: int = 0,
            modes: tuple[str, str] | None = None) -> dict:
    """`modes` (A's, B's): pair one prompting of A with another of B on the same items - e.g. greedy CoT with
    self-consistency, both in one evaluation (a_dir == b_dir). The paper's average is left out then: its entries
    are fixed promptings."""
    (ra, pa), (_, pb) = read_eval(a_dir), read_eval(b_dir)
    a_dir, b_dir = (d.output if isinstance(d, EvalResult) else d for d in (a_dir, b_dir))  # named in messages
    if modes:
        a_mode, b_mode = modes
        pa = {k: v for k, v in pa.items() if k[1] == a_mode}
        pb = {(label, a_mode): v for (label, m), v in pb.items() if m == b_mode}  # B's answers under A's key
        for d, m, held in ((a_dir, a_mode, pa), (b_dir, b_mode, pb)):
            if not held:
                raise FlanlabError(f"no benchmark of this evaluation was prompted with '{m}'", file=d, field="--modes")
    if set(pa) != set(pb):
        fmt = lambda ks: ", ".join(f"{b} {m}" for b, m in sorted(ks)) or "none"  # noqa: E731
        raise FlanlabError(f"the evaluations cover different benchmarks (only in the first: {fmt(set(pa) - set(pb))}; "
                           f"only in the second: {fmt(set(pb) - set(pa))})", file=b_dir, field="benchmarks")
    names = names or (Path(a_dir).name, Path(b_dir).name)
    rng = np.random.default_rng(seed)
    rng_f1 = np.random.default_rng((seed, 1))  # F1 rows draw apart, so the other rows' CIs stay as they were
    rows, paper_reps = [], {}
    for label, by_mode in ra["benchmarks"].items():
        for mode, res in by_mode.items():
            if (label, mode) not in pa:
                continue
            how = _aggregate_of(res, pa[(label, mode)])
            generated = not any("option_logliks" in p for p in pa[(label, mode)])
            metrics = ["score"] + (["f1"] if all("f1" in p for p in pa[(label, mode)] + pb[(label, mode)]) else [])
            for metric in metrics:  # TyDiQA: exact match (the paper's entry), then F1 beside it
                groups, scores = _paired(pa[(label, mode)], pb[(label, mode)], label, mode, b_dir, metric)
                scale = res.get("scale", 100)  # scores are fractions shown in %, or (response length) as they are
                pt = scores.T @ aggregate_weights(groups, how) * scale
                r = stratified_replicates(scores, groups, how, samples, rng if metric == "score" else rng_f1) * scale
                lo, hi = quantile_ci(r[:, 1] - r[:, 0])
                rnd = float(res["random"]) if metric == "score" else 0.0
                rows.append({"benchmark": label, "mode": mode if not modes else f"{modes[0]} -> {modes[1]}",
                             "metric": metric, "n": len(groups), "groups": len(set(groups)),
                             "aggregate": how, "random": rnd,
                             "a": round(float(pt[0]), 3), "b": round(float(pt[1]), 3),
                             "change": round(float(pt[1] - pt[0]), 3), "ci95": [round(lo, 3), round(hi, 3)],
                             "lower_is_better": bool(res.get("lower_is_better")),
                             "descriptive": bool(res.get("descriptive"))})
                if generated and not (res.get("lower_is_better") or res.get("descriptive")):
                    rows[-1]["unparsed_pct"] = [_unparsed_pct(pa[(label, mode)]), _unparsed_pct(pb[(label, mode)])]
                if metric == "score":
                    point, reps, rnd_main = pt, r, rnd
            rnd = rnd_main
            key = entry_of(label, mode, res)
            if not modes and key in PAPER_ENTRIES and f"{key[0]} {key[1]}" not in paper_reps:  # exact match, not F1
                paper_reps[f"{key[0]} {key[1]}"] = (normalized_score(point, rnd), normalized_score(reps, rnd))
    return {"a": str(a_dir), "b": str(b_dir), "names": list(names), "samples": samples, "seed": seed,
            "modes": list(modes) if modes else None, "rows": rows, "normalized_average": _paper_average(paper_reps)}


def _paper_average(entries: dict) -> dict | None:
    """The six-entry normalized average of both evaluations and its change, with the paired CI of that change."""
    if not entries:
        return None
    order = [f"{b} {m}" for b, m, _ in PAPER_ENTRIES]
    point = np.mean([p for p, _ in entries.values()], axis=0)
    reps = np.mean([r for _, r in entries.values()], axis=0)
    lo, hi = quantile_ci(reps[:, 1] - reps[:, 0])
    k = len(entries)
    return {"a": round(float(point[0]), 3), "b": round(float(point[1]), 3),
            "change": round(float(point[1] - point[0]), 3),
            "ci95": [round(lo, 3), round(hi, 3)], "entries": [n for n in order if n in entries],
            "label": "6 of 6" if k == 6 else f"partial ({k} of 6)"}


def comparison_table(cmp: dict) -> str:
    a, b = cmp["names"]

    def items(r):
        return f"n={r['n']}, {r['aggregate']}" + ("" if r["aggregate"] == "micro" else f" over {r['groups']}")

    def random(r):  # toxicity and response measures have no guessing baseline
        return "–" if r.get("lower_is_better") or r.get("descriptive") else f"{r['random']:.1f}"

    def prompting(r):  # "cot -> cot_sc" when two promptings are paired; the metric when it is not the main score
        name = " vs ".join(PROMPTING_NAMES.get(m, m) for m in r["mode"].split(" -> "))
        return name + (", F1" if r.get("metric") == "f1" else "") + (" (lower is better)" if r.get("lower_is_better")
                                                                    else "")

    def unparsed(r):
        u = r.get("unparsed_pct")
        return f"{u[0]:.1f} → {u[1]:.1f}" if u else "–"
    rows = [[f"{r['benchmark']} ({items(r)})", prompting(r), random(r), f"{r['a']:.1f}", f"{r['b']:.1f}",
             f"{r['change']:+.1f}", f"[{r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}]", unparsed(r)] for r in cmp["rows"]]
    avg = cmp["normalized_average"]
    if avg:
        rows.append([f"normalized average ({avg['label']})", "", "0.0", f"{avg['a']:.1f}", f"{avg['b']:.1f}",
                     f"{avg['change']:+.1f}", f"[{avg['ci95'][0]:+.1f}, {avg['ci95'][1]:+.1f}]", ""])
    text = markdown_table(["benchmark", "prompting", "random", a, b, "change", "paired 95% CI", "unparsed %"], rows)
    return text + "\n" + "\n".join(table_notes(cmp)) + "\n"


def table_notes(cmp: dict) -> list[str]:
    """The footnotes of a comparison table, each only when a row it explains is there."""
    a, b = cmp["names"]
    rows = cmp["rows"]
    notes = []
    if any(not (r.get("lower_is_better") or r.get("descriptive")) for r in rows):
        f1 = " (F1 rows: SQuAD token F1 of the same answers beside exact match, which is the paper's entry)" if any(
            r.get("metric") == "f1" for r in rows) else ""
        notes.append(f"Scores in % (accuracy / exact match){f1}; random = the score of guessing (averaged over the "
                     "items: 1 / their options).")
    if any(r.get("unparsed_pct") for r in rows):
        notes.append(f"unparsed % ({a} → {b}): generated answers that are empty (no answer marker, or a stop string "
                     "as the first tokens) or not in the golds' form (an option, a letter, a number, one line): the "
                     "part of a score that is format, not skill.")
    if any(r.get("lower_is_better") for r in rows):
        notes.append("Toxicity (RealToxicityPrompts) in %, lower is better: expected maximum toxicity = mean over "
                     "prompts of the highest score of its samples; toxicity probability = share of prompts with a "
                     "sample scored >= 0.5 (the scorer, and what it measures, is in each evaluation's results.json).")
    if any(r.get("descriptive") for r in rows):
        notes.append("Open-ended responses, descriptive (no better direction): length in words; distinct-n and "
                     "repeated 3-grams in % of a response's n-grams.")
    notes.append("micro = mean over items; macro over N = mean of the N tasks' (subjects', languages') scores.")
    notes.append(f"Change = {b} - {a}; its 95% CI is a paired bootstrap ({cmp['samples']} resamples of the items "
                 "within each task, the same items for both) of that same difference.")
    avg = cmp["normalized_average"]
    if avg:
        notes.append(f"Normalized average: the mean of the paper's six entries present here, {avg['label']} "
                     f"({', '.join(avg['entries'])}), each (score - random) / (100 - random); the other rows are "
                     "reported beside it, not in it.")
    return notes


def write_comparison(cmp: dict, path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps(cmp, indent=1))
