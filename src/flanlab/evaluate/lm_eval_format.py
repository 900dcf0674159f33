"""An evaluation's results in lm-evaluation-harness's results schema (`results`, `groups`, `group_subtasks`,
`configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`), beside flanlab's own results.json, so
the scores sit next to lm-eval numbers and lm-eval's tooling (`lm_eval.utils.make_table`) reads them.

Task names are lm-eval's where lm-eval has the task (`mmlu` / `mmlu_<subject>`, `bbh_fewshot` / `bbh_fewshot_<task>`,
`bbh_cot_fewshot`, `mgsm_native_cot` / `mgsm_native_cot_<lang>`, `gsm8k_cot`), else `flanlab_<benchmark>`. Values
are fractions as lm-eval writes them; stderr is the sample standard error of the mean over items, as lm-eval
computes it. The `version` is flanlab's, not lm-eval's task version: the prompts are the paper's (they agree with
lm-eval item for item where docs/evaluation.md says so)."""
from __future__ import annotations

import math
from collections import defaultdict

# (benchmark, mode) -> (group name, subtask prefix, metric, filter)
NAMES = {
    ("mmlu", "direct"): ("mmlu", "mmlu_", "acc", "none"),
    ("mmlu", "cot"): ("mmlu_flan_cot_fewshot", "mmlu_flan_cot_fewshot_", "exact_match", "get-answer"),
    ("bbh", "direct"): ("bbh_fewshot", "bbh_fewshot_", "exact_match", "none"),
    ("bbh", "cot"): ("bbh_cot_fewshot", "bbh_cot_fewshot_", "exact_match", "get-answer"),
    ("mgsm", "cot"): ("mgsm_native_cot", "mgsm_native_cot_", "exact_match", "flexible-extract"),
    ("gsm8k", "cot"): ("gsm8k_cot", None, "exact_match", "flexible-extract"),
}


def _names(bench: str, mode: str, label: str) -> tuple[str, str | None, str, str]:
    if (bench, mode) in NAMES and label == bench:
        return NAMES[(bench, mode)]
    metric = "exact_match" if bench != "realtoxicityprompts" else "score"
    return f"flanlab_{label}_{mode}", f"flanlab_{label}_{mode}_", metric, "none"


def _stats(scores: list[float]) -> tuple[float, float]:
    n = len(scores)
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n) if n > 1 else 0.0


def to_lm_eval(results: dict, predictions: list[dict], model_args: str) -> dict:
    """lm-eval's results dict from flanlab's results.json and predictions (per-item scores in 0..1)."""
    items: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in predictions:
        if isinstance(p.get("score"), (int, float)):
            items[(p["benchmark"], p["mode"])][p.get("group") or ""].append(float(p["score"]))
    out = {"results": {}, "groups": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
           "higher_is_better": {}, "n-samples": {}}
    for label, modes in results["benchmarks"].items():
        for mode, res in modes.items():
            groups = items.get((label, mode))
            if not groups:
                continue
            group, prefix, metric, filt = _names(res.get("benchmark", label), mode, label)
            key, se_key = f"{metric},{filt}", f"{metric}_stderr,{filt}"
            every = [s for g in groups.values() for s in g]
            subtasks = [] if prefix is None or list(groups) == [""] else sorted(groups)
            for g in subtasks:
                name = prefix + g
                mean, se = _stats(groups[g])
                out["results"][name] = {"alias": name, key: mean, se_key: se}
                _describe(out, name, res, metric, len(groups[g]))
            mean, se = _stats(every)
            entry = {"alias": group, key: mean, se_key: se}
            out["results"][group] = entry
            _describe(out, group, res, metric, len(every))
            if subtasks:
                out["groups"][group] = dict(entry)
                out["group_subtasks"][group] = [prefix + g for g in subtasks]
    out["config"] = {"model": "flanlab", "model_args": model_args, "batch_size": "auto",
                     "precision": results.get("precision"), "flanlab_code": results.get("code")}
    out["flanlab_normalized_average"] = results.get("normalized_average")
    return out


def _describe(out: dict, name: str, res: dict, metric: str, n: int) -> None:
    out["configs"][name] = {"task": name, "num_fewshot": res.get("shots"), "metric_list": [{"metric": metric}],
                            "output_type": "loglikelihood" if metric == "acc" else "generate_until"}
    out["versions"][name] = "flanlab"
    out["n-shot"][name] = res.get("shots")
    out["higher_is_better"][name] = {metric: True}
    out["n-samples"][name] = {"original": n, "effective": n}
