"""Answer extraction, metrics, majority vote, the paper's normalized average, bootstrap CIs."""
from __future__ import annotations

import collections
import re
import string
from typing import Iterable, Sequence

import numpy as np

_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LETTER_RE = re.compile(r"^\(?([A-Z])\)?(?:[.:)\s]|$)")
COT_PHRASES = ("So the answer is", "The answer is")


def _head(phrase: str) -> str:
    first, rest = phrase[0], re.escape(phrase[1:])
    return (f"[{first.upper()}{first.lower()}]" if first.isalpha() else re.escape(first)) + rest


def _phrase_re(phrase: str) -> re.Pattern:
    # the answer runs to a sentence end: a period followed by space or the end, or a line break
    return re.compile(_head(phrase) + r"[:：]?\s*(.+?)\s*(?:[.。।]\s*$|[.。।]\s+|\n|$)", re.S)


def extract_cot_answer(text: str, phrases: Sequence[str] = COT_PHRASES) -> str:
    """The answer after the last answer marker in "<reasoning> So the answer is X." (`phrases`: the markers in the
    prompt's language). Markers are found wherever they start, so an output that quotes one ('... is "The answer is
    (D)." The answer is (C).') commits to the last, (C). lm-eval's regex filters take the first marker instead; the
    two differ only on outputs with more than one. Without a marker the output commits to no answer (as Flan's and
    lm-eval's CoT parsing): returns ""."""
    best = None
    for phrase in phrases:
        for m in re.finditer(_head(phrase), text):
            if best is None or m.start() > best[0]:
                best = (m.start(), phrase)
    if best is None:
        return ""
    m = _phrase_re(best[1]).match(text, best[0])
    return m.group(1).strip() if m else ""


def answer_form_ok(answer: str, golds: Sequence[str]) -> bool:
    """Whether an extracted answer has the form its golds have: a "(B)" option, a letter, a number, or one line of
    text. An empty answer (no marker; a stop string as the first tokens) never has it. Scores say skill and format
    together; the share of answers not in the form says how much of a score is format."""
    a = answer.strip()
    if not a:
        return False
    g = str(golds[0]).strip() if golds else ""
    if re.fullmatch(r"\([A-R]\)", g):
        return re.fullmatch(r"\(?[A-R]\)?\.?", a) is not None
    if re.fullmatch(r"[A-Z]", g):
        return re.fullmatch(r"\(?[A-Z]\)?[.:]?", a) is not None
    if _WHOLE_NUM_RE.match(g):
        return as_number(a) is not None
    return "\n" not in a or any("\n" in str(x) for x in golds)


_WHOLE_NUM_RE = re.compile(r"^\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*\.?$")


def as_number(text: str) -> str | None:
    """The number a short answer *is* ("42", "$1,200", "7."), or None if it is anything else."""
    m = _WHOLE_NUM_RE.match(text.strip())
    return extract_number(m.group(1)) if m else None


def extract_direct_answer(text: str) -> str:
    t = text.strip()
    # a direct answer is the first line; models sometimes continue with a new few-shot block
    t = t.split("\n\n")[0].split("\nQ:")[0].strip()
    return t


def extract_number(text: str) -> str | None:
    nums = _NUM_RE.findall(text)
    if not nums:
        return None
    n = nums[-1].replace(",", "")
    if "." in n:
        n = n.rstrip("0").rstrip(".")
    return n


def extract_choice(text: str, options: Sequence[str] | None, letters: bool = False) -> str:
    """Map free text to an option: a letter "(B)", "B." or an option string. An option counts when the answer
    is that option, or contains it as whole words and no other option ("no" is not in "nothing to say",
    "true" is not in "untrue")."""
    t = text.strip()
    if letters:
        m = _LETTER_RE.match(t)
        if m:
            return m.group(1)
        m = re.search(r"\(([A-Z])\)", t)
        if m:
            return m.group(1)
    if options:
        norm = normalize(t)
        for o in options:
            if normalize(o) == norm:
                return o
        hits = [o for o in options if normalize(o) and re.search(rf"(?<!\w){re.escape(normalize(o))}(?!\w)", norm)]
        if len(hits) == 1:
            return hits[0]
    return t


def normalize(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, fold white space. An answer
    that is nothing but an article (the letter "a") keeps it, so it cannot collapse to ""."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    kept = " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())
    return kept or " ".join(s.split())


def exact_match(pred: str, golds: Iterable[str]) -> float:
    """An empty prediction (no answer) never matches."""
    p = normalize(pred)
    return float(bool(p) and any(p == normalize(g) for g in golds))


def strict_match(pred: str, golds: Iterable[str]) -> float:
    """BBH's rule: the answer must equal the target after stripping white space and one trailing period; signs,
    brackets and case count ("6" is not "-6", ")" is not "" )."""
    p = pred.strip()
    if p.endswith("."):
        p = p[:-1].rstrip()
    return float(bool(p) and any(p == g.strip() for g in golds))


def letter_match(pred: str, golds: Iterable[str]) -> float:
    """Multiple-choice letters: "(B)", "B", "b." all mean B."""
    p = pred.strip().strip("().:").strip().upper()
    return float(len(p) == 1 and any(p == g.strip().strip("().:").strip().upper() for g in golds))


def f1(pred: str, golds: Iterable[str]) -> float:
    best = 0.0
    pt = normalize(pred).split()
    for g in golds:
        gt = normalize(g).split()
        common = collections.Counter(pt) & collections.Counter(gt)
        same = sum(common.values())
        if not pt or not gt:
            best = max(best, float(pt == gt))
            continue
        if same == 0:
            continue
        prec, rec = same / len(pt), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def number_match(pred: str, golds: Iterable[str]) -> float:
    """`pred` must *be* a number (see as_number): digits inside other text are not an answer."""
    p = as_number(pred)
    return float(p is not None and any(p == extract_number(g) for g in golds))


INVALID = "[invalid]"


def majority_vote(answers: Sequence[str], invalid_votes: bool = False) -> str:
    """Most frequent (normalized) answer; ties go to the answer seen first. Samples without an answer ("") don't
    vote, or, with invalid_votes (lm-eval's rule), vote for "[invalid]", which scores 0 when it wins ("")."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for a in answers:
        k = normalize(a)
        if not k:
            if not invalid_votes:
                continue
            k, a = INVALID, ""
        counts[k] = counts.get(k, 0) + 1
        first.setdefault(k, a)
    if not counts:
        return answers[0] if answers else ""
    best = max(counts.values())
    return next(first[k] for k in first if counts[k] == best)


def normalized_score(score: float, random_baseline: float) -> float:
    """Flan's normalization (scores in %): 0 = random guessing, 100 = perfect."""
    if random_baseline >= 100:
        return 0.0
    return (score - random_baseline) / (100.0 - random_baseline) * 100.0


def normalized_average(entries: Iterable[tuple[float, float]]) -> float:
    vals = [normalized_score(s, r) for s, r in entries]
    return float(np.mean(vals)) if vals else float("nan")


# The paper's normalized average: the macro average of exactly these six evaluations (benchmark, prompting, shots),
# each normalized against its random baseline. Everything else (GSM8K, BIG-bench, built-in tasks, other shot
# counts) is reported beside it, never inside it.
PAPER_ENTRIES = (("mmlu", "direct", 5), ("mmlu", "cot", 5), ("bbh", "direct", 3), ("bbh", "cot", 3),
                 ("tydiqa", "direct", 1), ("mgsm", "cot", 8))
PAPER_SHOTS = {b: k for b, _, k in PAPER_ENTRIES}
# how tables name a prompting (a benchmark spec's `modes:`) and the toxicity measures that stand in its column
PROMPTING_NAMES = {"direct": "direct", "cot": "CoT", "cot_sc": "CoT + self-consistency",
                   "expected_max_toxicity": "expected max toxicity", "toxicity_probability": "toxicity probability"}


def entry_of(label: str, mode: str, r: dict) -> tuple[str, str, int | None]:
    """(benchmark, mode, shots) of one result; results written before they recorded their benchmark and shots are
    read by label ("mmlu_cot" is MMLU) at the benchmark's default shots."""
    bench = r.get("benchmark") or label.split("_")[0]
    return bench, mode, r.get("shots", PAPER_SHOTS.get(bench))


def paper_normalized_average(benchmarks: dict) -> dict:
    """{value, label, entries, others} from results.json's `benchmarks` ({label: {mode: result}}): `value` averages
    the paper's entries that are present (the first result of each), `label` says "6 of 6" or "partial (k of 6)"."""
    entries: dict[str, dict] = {}
    others = []
    for label, modes in benchmarks.items():
        for mode, r in modes.items():
            key = entry_of(label, mode, r)
            name = f"{key[0]} {key[1]}"
            if key in PAPER_ENTRIES and name not in entries:
                entries[name] = {"result": label, "score": r["score"], "random": r["random"],
                                 "normalized": round(normalized_score(r["score"], r["random"]), 3)}
            else:
                others.append(f"{label} {mode}")
    k = len(entries)
    value = round(float(np.mean([e["normalized"] for e in entries.values()])), 3) if k else None
    order = [f"{b} {m}" for b, m, _ in PAPER_ENTRIES]
    return {"value": value, "label": "6 of 6" if k == 6 else f"partial ({k} of 6)",
            "entries": {n: entries[n] for n in order if n in entries},
            "missing": [n for n in order if n not in entries], "others": others}


def bootstrap_ci(values: Sequence[float], weights: Sequence[float] | None = None, n: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the (weighted) mean: items resampled with replacement `n` times (in chunks of 100
    resamples, so a 14k-item benchmark needs no 14k x 1000 index array)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    w = np.ones(len(v)) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n, 100):
        s = rng.integers(0, len(v), size=(min(100, n - start), len(v)))
        means.append((v[s] * w[s]).sum(axis=1) / w[s].sum(axis=1))
    lo, hi = np.quantile(np.concatenate(means), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def aggregate_weights(groups: Sequence[str], how: str) -> np.ndarray:
    """Per-item weights summing to 1: micro = every item alike; macro = every group (task, subject, language) alike,
    its items sharing its weight."""
    g = np.asarray(groups)
    if how == "micro":
        return np.full(len(g), 1.0 / len(g))
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    return 1.0 / (len(names) * counts[inverse])


def stratified_replicates(values: np.ndarray, groups: Sequence[str], how: str, n: int, rng: np.random.Generator
                          ) -> np.ndarray:
    """`n` bootstrap replicates of the aggregate (micro or macro) of each column of `values` (items x k): items are
    resampled with replacement within their group, so every replicate keeps the groups and their sizes, and all
    columns use the same draw (a paired bootstrap when the columns are two evaluations of the same items).

    A group of one item has nothing to resample within it (its replicates would never vary, and a benchmark of one
    item per subject would get a CI of zero width): the single-item groups are resampled together as one stratum,
    each item keeping its own weight."""
    v = np.asarray(values, float).reshape(len(groups), -1)
    w = aggregate_weights(groups, how)
    sizes = collections.Counter(groups)
    strata = [g if sizes[g] > 1 else None for g in groups]  # None: the pooled single-item groups
    out = np.zeros((n, v.shape[1]))
    for stratum in dict.fromkeys(strata):
        idx = np.array([i for i, s in enumerate(strata) if s == stratum])
        draw = idx[rng.integers(0, len(idx), size=(n, len(idx)))]  # n x group size
        out += np.einsum("rj,rjk->rk", w[draw], v[draw])
    return out


def quantile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
