"""`flanlab rescore EVAL_DIR CONFIG`: an earlier evaluation's recorded outputs scored again by the current answer
extraction and scoring rules (and the items' current random baselines), without the model. The items are rebuilt
from the evaluation's config; every prediction must find its item. results.json, predictions.jsonl and results.md
are rewritten (atomically), with `rescored` saying by which code; sampled benchmarks (RealToxicityPrompts, open-ended
generation) are kept as they were."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import FlanlabError
from ..utils import atomic_write_text, code_version
from ..evaluate.harness import EvalConfig, load_benchmarks, results_table, score_mode
from ..evaluate.scoring import paper_normalized_average

KEPT = ("seconds", "benchmark", "shots")  # result fields that describe the run, not the scoring


def rescore(eval_dir: str | Path, cfg: EvalConfig, *, file: object, base: Path | None) -> dict:
    from .compare import read_eval
    eval_dir = Path(eval_dir)
    results, preds = read_eval(eval_dir)
    benches = {spec.label or spec.name: (spec, bench) for spec, bench in load_benchmarks(cfg, file, base)}
    new_preds: dict[tuple[str, str], list[dict]] = {}
    for label, by_mode in results["benchmarks"].items():
        if label not in benches:
            raise FlanlabError(f"the config has no benchmark labelled '{label}' (it has {sorted(benches)})",
                               file=file, field="benchmarks")
        spec, bench = benches[label]
        if spec.name in ("realtoxicityprompts", "generation"):
            continue
        by_id = {it.id: it for it in bench.items}
        for mode, old in by_mode.items():
            recorded = preds.get((label, mode), [])
            missing = [p["id"] for p in recorded if p["id"] not in by_id]
            if missing:
                raise FlanlabError(f"{label} {mode}: {len(missing)} recorded item(s) not in the config's items (first: "
                                   f"{missing[0]}): not the config this evaluation ran", file=file, field=label)
            items = [by_id[p["id"]] for p in recorded]
            lls = [p["option_logliks"] for p in recorded] if all("option_logliks" in p for p in recorded) else None
            res, mode_preds = score_mode(bench, items, mode, [p["outputs"] for p in recorded], lls, cfg.seed)
            by_mode[mode] = {**res, **{k: old[k] for k in KEPT if k in old}}
            new_preds[(label, mode)] = [{**p, "benchmark": label} for p in mode_preds]
    paper = paper_normalized_average(results["benchmarks"])
    results.update(normalized_average=paper["value"], normalized_average_of=paper,
                   rescored={"code": code_version(), "evaluated_by": results.get("code")})
    lines = []
    for (label, mode), ps in preds.items():  # the file's order; rescored benchmarks' predictions replaced
        lines += new_preds.get((label, mode), ps)
    atomic_write_text(eval_dir / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in lines))
    atomic_write_text(eval_dir / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    atomic_write_text(eval_dir / "results.md", results_table(results))
    return results
