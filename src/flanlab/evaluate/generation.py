"""Open-ended generation, the paper's usability comparison: free-form prompts answered before and after finetuning,
read side by side, with simple measures of each response - its length in words, distinct-1/2 (unique n-grams over
all n-grams: low = repetitive), its repetition rate (the share of its 3-grams that already occurred in it) and, where
a reference is given, ROUGE-L F1 (Google's rouge-score package, when installed).

Prompts: JSONL lines `{"id", "prompt"}` with an optional `"reference"`. The measures describe responses; they do not
say which response is better - read them (generations.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FlanlabError
from ..tasks.sources.files import read_json_lines
from .benchmarks import Benchmark, EvalItem
from .requests import GenRequest
from .scoring import bootstrap_ci

# measure -> scale of its numbers in tables (100: a fraction shown in %, 1: as it is)
MEASURES = {"length_words": 1, "distinct_1": 100, "distinct_2": 100, "repetition_3gram": 100, "rouge_l": 100}


def load_prompts(path, limit: int | None = None) -> Benchmark:
    path = Path(path)
    if not path.is_file():
        raise FlanlabError("prompts file not found", file=path, field="path")
    items, seen = [], set()
    for n, rec in read_json_lines(path):
        if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
            raise FlanlabError(f"line {n} has no prompt", file=path, field="prompt")
        pid = str(rec.get("id", n))
        if pid in seen:
            raise FlanlabError(f"line {n}: id '{pid}' appears twice", file=path, field="id")
        seen.add(pid)
        ref = rec.get("reference")
        items.append(EvalItem(pid, "all", [str(ref)] if ref else [], {"generate": rec["prompt"]}))
        if limit and len(items) >= limit:
            break
    if not items:
        raise FlanlabError("no prompts in the file", file=path)
    return Benchmark("generation", items, "micro")


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def measures(text: str) -> dict[str, float]:
    """Length in words, distinct-1/2 and the 3-gram repetition rate of one response."""
    words = text.lower().split()
    out = {"length_words": float(len(words))}
    for n in (1, 2):
        grams = _ngrams(words, n)
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    grams = _ngrams(words, 3)
    seen, repeated = set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    out["repetition_3gram"] = repeated / len(grams) if grams else 0.0
    return out


def rouge_l(pred: str, ref: str) -> float:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise FlanlabError("references need rouge-score for ROUGE-L: pip install rouge-score",
                           field="reference") from None
    return float(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure)


def prompt_text(engine, prompt: str, chat: bool) -> str:
    return engine.tok.chat_prompt(prompt) if chat else prompt + "\n"


def run_generation(engine, bench: Benchmark, spec, seed: int, chat: bool, label: str, progress=None
                   ) -> tuple[dict, list[dict]]:
    if progress is not None:
        progress.begin(label)
        engine.progress = progress
    reqs = [GenRequest(prompt=prompt_text(engine, it.prompts["generate"], chat), n=1, temperature=spec.temperature,
                       top_p=spec.top_p, max_new_tokens=spec.max_new_tokens, seed=seed) for it in bench.items]
    outs = [o[0].strip() for o in engine.generate(reqs)]
    per = [measures(o) for o in outs]
    if any(it.golds for it in bench.items):
        for m, it, o in zip(per, bench.items, outs):
            if it.golds:
                m["rouge_l"] = rouge_l(o, it.golds[0])
    results, preds = {}, []
    for name, scale in MEASURES.items():
        idx = [i for i, m in enumerate(per) if name in m]
        if not idx:
            continue
        v = np.array([per[i][name] for i in idx])
        lo, hi = bootstrap_ci(v, seed=seed)
        results[name] = {"score": round(float(v.mean()) * scale, 3),
                         "ci95": [round(lo * scale, 3), round(hi * scale, 3)], "random": 0.0, "n": len(idx),
                         "aggregate": "micro", "scale": scale, "descriptive": True}
        preds += [{"id": bench.items[i].id, "mode": name, "group": "all", "score": per[i][name], "golds": []}
                  for i in idx]
    preds += [{"id": it.id, "mode": "response", "group": "all", "prompt": it.prompts["generate"], "response": o,
               "reference": it.golds[0] if it.golds else None, "score": 0.0, "golds": []}
              for it, o in zip(bench.items, outs)]
    return results, preds


def side_by_side(before: list[dict], after: list[dict], names=("before", "after")) -> str:
    """generations.md: each prompt with the two responses, one after the other."""
    b = {p["id"]: p for p in before if p["mode"] == "response"}
    a = {p["id"]: p for p in after if p["mode"] == "response"}
    parts = ["# Open-ended generations, side by side", "",
             "Responses to the same prompts before and after finetuning (illustrative prompts, not a benchmark).", ""]
    for pid, p in b.items():
        if pid not in a:
            continue
        parts += [f"## {pid}", "", f"**Prompt:** {p['prompt']}", ""]
        for name, resp in zip(names, (p["response"], a[pid]["response"])):
            quoted = "\n".join("> " + x for x in (resp or "(empty)").splitlines())
            parts += [f"**{name}:**", "", quoted, ""]
    return "\n".join(parts)
