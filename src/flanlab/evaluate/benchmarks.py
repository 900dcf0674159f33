"""Benchmark loaders, each reading the benchmark's upstream file format from a local directory
(or the HF hub when a path is not given and the machine is online), and building the paper's
prompts: MMLU 5-shot, BBH 3-shot, TyDiQA-GoldP 1-shot, MGSM/GSM8K 8-shot, BIG-bench JSON, and
the built-in suite. Each item carries a direct prompt and, where exemplars with reasoning
exist, a chain-of-thought prompt.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import FlanlabError
from ..formats import COT_TRIGGER, Format, cot_target, render_example
from .scoring import extract_cot_answer

COT_A = f"A: {COT_TRIGGER}"


@dataclass
class EvalItem:
    id: str
    group: str
    golds: list[str]
    prompts: dict[str, str]  # mode -> prompt ("direct", "cot")
    answer_type: Literal["letter", "choice", "number", "text", "span"] = "text"
    options: list[str] | None = None  # candidate answers (for matching / log-likelihood ranking)
    random: float = 0.0  # random-guess accuracy in %, for the normalized average


@dataclass
class Benchmark:
    name: str
    items: list[EvalItem]
    metric: str = "accuracy"  # accuracy | em | f1
    aggregate: Literal["micro", "macro"] = "macro"
    notes: list[str] = field(default_factory=list)


def _p(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FlanlabError("benchmark data not found", file=p, field="path")
    return p


def _lm_eval_root() -> Path | None:
    import importlib.util
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# ---------------------------------------------------------------------------- MMLU

def _mmlu_rows(f: Path) -> list[list[str]]:
    rows = []
    with f.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if len(row) != 6:
                raise FlanlabError(f"row {n} has {len(row)} columns, expected 6 (question, A, B, C, D, answer)", file=f)
            if row[5].strip() not in "ABCD" or not row[5].strip():
                raise FlanlabError(f"row {n}: answer must be one of A, B, C, D, got '{row[5]}'", file=f, field="answer")
            rows.append([c.strip() for c in row])
    return rows


def _mmlu_q(row, style="letter_dot") -> str:
    q, a, b, c, d, _ = row
    if style == "letter_dot":
        return f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
    return f"Q: {q}\n(A) {a} (B) {b} (C) {c} (D) {d}\n{COT_A}"


def load_mmlu(path, shots: int = 5, subjects: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream layout (hendrycks/test data.tar): {path}/dev/<subject>_dev.csv, {path}/test/<subject>_test.csv,
    header-less rows `question,A,B,C,D,answer`. CoT exemplars: {path}/cot_prompts.json, else the Flan CoT
    prompts shipped in lm-eval (tasks/mmlu/flan_cot_fewshot/_cot_prompts.json)."""
    root = _p(path)
    if (root / "data").is_dir():
        root = root / "data"
    tests = sorted((root / "test").glob("*_test.csv"))
    if not tests:
        raise FlanlabError("no test/<subject>_test.csv files", file=root, field="path")
    cot_file = root / "cot_prompts.json"
    if not cot_file.is_file():
        lm = _lm_eval_root()
        cot_file = lm / "tasks/mmlu/flan_cot_fewshot/_cot_prompts.json" if lm else None
    cot = json.loads(cot_file.read_text()) if cot_file is not None and cot_file.is_file() else {}
    items, notes = [], []
    for tf in tests:
        subject = tf.name[: -len("_test.csv")]
        if subjects and subject not in subjects:
            continue
        dev = _mmlu_rows(root / "dev" / f"{subject}_dev.csv") if (root / "dev" / f"{subject}_dev.csv").is_file() else []
        if len(dev) < shots:
            raise FlanlabError(f"{shots}-shot needs {shots} dev rows, found {len(dev)}", file=root / "dev" / f"{subject}_dev.csv")
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        shot_block = "".join(f"{_mmlu_q(r)} {r[5]}\n\n" for r in dev[:shots])
        for i, row in enumerate(_mmlu_rows(tf)[:limit]):
            prompts = {"direct": head + shot_block + _mmlu_q(row)}
            if subject in cot:
                prompts["cot"] = cot[subject].rstrip() + "\n\n" + _mmlu_q(row, "paren")
            items.append(EvalItem(f"mmlu/{subject}/{i}", subject, [row[5]], prompts, "letter", list("ABCD"), 25.0))
        if subject not in cot:
            notes.append(f"no CoT exemplars for {subject}")
    return Benchmark("mmlu", items, "accuracy", "micro", notes)


# ---------------------------------------------------------------------------- BBH

def parse_bbh_cot_prompt(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Upstream cot-prompts/<task>.txt: a description, then 'Q: ...\\nA: Let's think step by step.\\n<reasoning> So the answer is X.' blocks."""
    lines = [l for l in text.splitlines() if not l.startswith("-----") and "canary" not in l.lower()]
    text = "\n".join(lines).strip()
    parts = re.split(r"\n\n(?=Q: )", text)
    desc = parts[0].strip() if not parts[0].startswith("Q: ") else ""
    shots = []
    for p in parts[1:] if desc else parts:
        m = re.match(r"Q: (.*?)\nA: Let's think step by step\.\n?(.*)", p, re.S)
        if m:
            shots.append((m.group(1).strip(), m.group(2).strip()))
    return desc, shots


def _bbh_lm_eval(task: str):
    lm = _lm_eval_root()
    f = lm / "tasks/bbh/cot_fewshot" / f"{task}.yaml" if lm else None
    if f is None or not f.is_file():
        return None
    import yaml
    d = yaml.safe_load(f.read_text())
    samples = d.get("fewshot_config", {}).get("samples", [])
    return d.get("description", "").strip(), [(s["input"], s["target"]) for s in samples]


def _bbh_random(exs: list[dict]) -> float:
    golds = {e["target"] for e in exs}
    if all(re.fullmatch(r"\([A-R]\)", g) for g in golds):
        counts = [len(re.findall(r"^\([A-R]\)", e["input"], re.M)) or len(golds) for e in exs]
        return 100.0 * sum(1 / c for c in counts) / len(counts)
    if 1 < len(golds) <= 3:
        return 100.0 / len(golds)
    return 0.0


def load_bbh(path=None, shots: int = 3, tasks: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream layout (suzgunmirac/BIG-Bench-Hard): {path}/bbh/<task>.json ({"examples": [{input, target}]})
    and {path}/cot-prompts/<task>.txt. CoT prompts fall back to lm-eval's bbh/cot_fewshot yaml."""
    root = _p(path)
    data_dir = root / "bbh" if (root / "bbh").is_dir() else root
    files = sorted(data_dir.glob("*.json"))
    if not files:
        raise FlanlabError("no <task>.json files", file=data_dir, field="path")
    items, notes = [], []
    for f in files:
        task = f.stem
        if tasks and task not in tasks:
            continue
        try:
            exs = json.loads(f.read_text())["examples"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise FlanlabError(f"expected {{\"examples\": [{{\"input\", \"target\"}}]}}: {e}", file=f, field="examples") from None
        for i, e in enumerate(exs):
            if not isinstance(e, dict) or "input" not in e or "target" not in e:
                raise FlanlabError("example needs 'input' and 'target'", file=f, field=f"examples[{i}]")
        pf = root / "cot-prompts" / f"{task}.txt"
        desc, cot_shots = parse_bbh_cot_prompt(pf.read_text()) if pf.is_file() else (_bbh_lm_eval(task) or ("", []))
        used = set()
        if len(cot_shots) < shots:  # no exemplar file: take the first examples as direct exemplars
            notes.append(f"{task}: no CoT prompt file; {shots} direct exemplars taken from the data")
            direct_shots = [(e["input"], e["target"]) for e in exs[:shots]]
            used = set(range(shots))
            cot_shots = []
        else:
            cot_shots = cot_shots[:shots]
            direct_shots = [(q, extract_cot_answer(r)) for q, r in cot_shots]
        head = f"{desc}\n\n" if desc else ""
        direct = head + "".join(f"Q: {q}\nA: {a}\n\n" for q, a in direct_shots)
        cotp = head + "".join(f"Q: {q}\n{COT_A}\n{r}\n\n" for q, r in cot_shots)
        rnd = _bbh_random(exs)
        kept = [e for i, e in enumerate(exs) if i not in used][:limit]
        for i, e in enumerate(kept):
            prompts = {"direct": direct + f"Q: {e['input']}\nA:"}
            if cot_shots:
                prompts["cot"] = cotp + f"Q: {e['input']}\n{COT_A}\n"
            letter = bool(re.fullmatch(r"\([A-R]\)", e["target"]))
            items.append(EvalItem(f"bbh/{task}/{i}", task, [e["target"]], prompts, "letter" if letter else "text", None, rnd))
    return Benchmark("bbh", items, "accuracy", "macro", notes)


# ---------------------------------------------------------------------------- TyDiQA-GoldP

def _squad(f: Path) -> list[dict]:
    try:
        d = json.loads(f.read_text())
        out = []
        for art in d["data"]:
            for para in art["paragraphs"]:
                for qa in para["qas"]:
                    out.append({"id": qa["id"], "context": para["context"], "question": qa["question"],
                                "answers": [a["text"] for a in qa["answers"]]})
        return out
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise FlanlabError(f"not SQuAD format (data[].paragraphs[].qas[]): {e}", file=f, field="data") from None


def load_tydiqa(path, shots: int = 1, languages: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream files: {path}/tydiqa-goldp-v1.1-dev.json (SQuAD format; language = id prefix) and optionally
    tydiqa-goldp-v1.1-train.json for the 1-shot exemplars (else another dev example of the language)."""
    root = _p(path)
    dev = root / "tydiqa-goldp-v1.1-dev.json" if root.is_dir() else root
    if not dev.is_file():
        raise FlanlabError("missing tydiqa-goldp-v1.1-dev.json", file=root, field="path")
    rows = _squad(dev)
    train_f = dev.parent / "tydiqa-goldp-v1.1-train.json"
    train = _squad(train_f) if train_f.is_file() else []
    lang = lambda r: r["id"].split("-")[0]  # noqa: E731
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(lang(r), []).append(r)
    tr_lang: dict[str, list[dict]] = {}
    for r in train:
        tr_lang.setdefault(lang(r), []).append(r)
    fmt = lambda r: f"{r['context']}\n\nQ: {r['question']}\n\nA:"  # noqa: E731
    items = []
    for lg, rs in sorted(by_lang.items()):
        if languages and lg not in languages:
            continue
        for i, r in enumerate(rs[:limit]):
            pool = tr_lang.get(lg) or [x for x in rs if x["id"] != r["id"]]
            shot = "".join(f"{fmt(x)} {x['answers'][0]}\n\n" for x in pool[:shots])
            items.append(EvalItem(f"tydiqa/{r['id']}", lg, r["answers"], {"direct": shot + fmt(r)}, "span"))
    return Benchmark("tydiqa", items, "em", "macro")


# ---------------------------------------------------------------------------- MGSM / GSM8K

# The 8 chain-of-thought exemplars of Wei et al. (2022), used for GSM8K and (as "EN-CoT") MGSM.
GSM_EXEMPLARS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6.", "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39.", "39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8.", "8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9.", "9"),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29.", "29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls.", "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8.", "8"),
]


def _math_items(name: str, group: str, rows: list[tuple[str, str]], exemplars, shots: int, limit) -> list[EvalItem]:
    ex = exemplars[:shots]
    direct = "".join(f"Q: {q}\nA: {a}\n\n" for q, _, a in ex)
    cot = "".join(f"Q: {q}\n{COT_A} {cot_target(r, a)}\n\n" for q, r, a in ex)
    return [EvalItem(f"{name}/{group}/{i}", group, [a], {"direct": direct + f"Q: {q}\nA:", "cot": cot + f"Q: {q}\n{COT_A}"}, "number")
            for i, (q, a) in enumerate(rows[:limit])]


def _exemplar_file(f: Path):
    out = []
    for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                d = json.loads(line)
                out.append((d["question"], d["rationale"], str(d["answer"])))
            except (json.JSONDecodeError, KeyError) as e:
                raise FlanlabError(f"line {n}: needs question, rationale, answer ({e})", file=f) from None
    return out


def load_mgsm(path, shots: int = 8, languages: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream files {path}/mgsm_<lang>.tsv (`question<TAB>answer_number`, no header). Native-language
    exemplars from {path}/exemplars_<lang>.jsonl ({question, rationale, answer}) if present, else the
    8 English CoT exemplars (the paper's EN-CoT setting)."""
    root = _p(path)
    files = sorted(root.glob("mgsm_*.tsv"))
    if not files:
        raise FlanlabError("no mgsm_<lang>.tsv files", file=root, field="path")
    items = []
    for f in files:
        lg = f.stem.split("_", 1)[1]
        if languages and lg not in languages:
            continue
        rows = []
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 2:
                raise FlanlabError(f"line {n} has {len(cols)} tab-separated columns, expected 2 (question, answer_number)", file=f)
            rows.append((cols[0], cols[1].strip()))
        ex_f = root / f"exemplars_{lg}.jsonl"
        exemplars = _exemplar_file(ex_f) if ex_f.is_file() else GSM_EXEMPLARS
        items += _math_items("mgsm", lg, rows, exemplars, shots, limit)
    return Benchmark("mgsm", items, "accuracy", "macro")


def load_gsm8k(path, shots: int = 8, limit: int | None = None) -> Benchmark:
    """Upstream test.jsonl: {"question", "answer": "<reasoning> #### <number>"}."""
    f = _p(path)
    if f.is_dir():
        f = f / "test.jsonl"
    rows = []
    for n, line in enumerate(_p(f).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((d["question"], d["answer"].split("####")[-1].strip().replace(",", "")))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise FlanlabError(f"line {n}: needs 'question' and 'answer' with '#### N' ({e})", file=f) from None
    return Benchmark("gsm8k", _math_items("gsm8k", "gsm8k", rows, GSM_EXEMPLARS, shots, limit), "accuracy", "macro")


# ---------------------------------------------------------------------------- BIG-bench JSON

def load_bigbench(tasks: list[str], root=None, shots: int = 0, limit: int | None = None) -> Benchmark:
    from ..tasks.sources.bigbench import bigbench_task, list_bigbench_tasks
    import fnmatch
    avail = list_bigbench_tasks(str(root) if root else None)
    names = [n for pat in tasks for n in avail if fnmatch.fnmatch(n, pat)]
    if not names:
        raise FlanlabError(f"no BIG-bench task matches {tasks}", field="tasks")
    items = []
    for name in names:
        t = bigbench_task(name, root)
        exs = t.dataset.source.all_examples
        tpl = t.get_templates()[0]
        shot_exs, rest = exs[:shots], exs[shots:]
        shot_block = "".join(f"{tpl.render(e)[0].rstrip()} {e.answer}\n\n" for e in shot_exs)
        for i, e in enumerate(rest[:limit]):
            q = tpl.render(e)[0].rstrip()
            prompts = {"direct": shot_block + q, "cot": shot_block + q + f" {COT_TRIGGER}"}
            golds = list(e.aliases or [e.answer])
            rnd = 100.0 / len(e.options) if e.options else 0.0
            items.append(EvalItem(f"bigbench/{name}/{i}", name, golds, prompts, "choice" if e.options else "text",
                                  list(e.options) if e.options else None, rnd))
    return Benchmark("bigbench", items, "accuracy", "macro")


# ---------------------------------------------------------------------------- built-in suite

def load_synthetic(registry, patterns: list[str], shots: int = 0, limit: int | None = 100, options: bool = False,
                   name: str = "synthetic") -> Benchmark:
    """Tasks of the built-in suite (e.g. held-out categories), test split, prompts in the training formats."""
    import random
    if patterns == ["held_out"]:
        tasks = registry.held_out()
    elif patterns == ["held_in"]:
        tasks = [t for t in registry if not t.held_out and not t.benchmark and t.collection == "synthetic"]
    else:
        tasks = registry.select(patterns)
    if not tasks:
        raise FlanlabError(f"no task matches {patterns}", field="tasks")
    items = []
    for t in tasks:
        tpl = t.get_templates()[0]
        for i, ex in enumerate(t.examples("test", limit)):
            rng = random.Random(i)
            shot_ids = rng.sample(range(t.size("train")), min(shots, t.size("train")))
            exemplars = [t.get("train", j) for j in shot_ids]
            prompts = {}
            for mode, cot in (("direct", False), ("cot", True)):
                if cot and ex.rationale is None:
                    continue
                prompts[mode] = render_example(t, ex, tpl, Format(shots, options, cot), exemplars=exemplars,
                                               trigger=COT_TRIGGER)["inputs"]
            at = t.category.answer_type
            rnd = 100.0 / len(ex.options) if at == "choice" and ex.options else 0.0
            items.append(EvalItem(f"{name}/{t.name}/{i}", t.name, [ex.answer], prompts, at,
                                  list(ex.options) if ex.options else None, rnd))
    return Benchmark(name, items, "accuracy", "macro")
