"""Benchmark loaders, each reading the benchmark's upstream file format from a local directory
(or the HF hub when a path is not given and the machine is online), and building the paper's
prompts: MMLU 5-shot, BBH 3-shot, TyDiQA-GoldP 1-shot, MGSM/GSM8K 8-shot, BIG-bench JSON, and
the built-in suite. Each item carries a direct prompt and, where exemplars with reasoning
exist, a chain-of-thought prompt.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import FlanlabError
from ..formats import COT_TRIGGER, TARGET_DELIMITER, Format, render_example
from ..tasks.sources.files import read_text_lines, read_tsv
from ..utils import read_text
from .scoring import extract_cot_answer

COT_A = f"A: {COT_TRIGGER}"


@dataclass
class EvalItem:
    id: str
    group: str
    golds: list[str]
    prompts: dict[str, str]  # mode -> prompt ("direct", "cot")
    answer_type: Literal["letter", "choice", "number", "text", "span", "exact"] = "text"
    options: list[str] | None = None  # candidate answers (for matching / log-likelihood ranking)
    random: float = 0.0  # random-guess accuracy in %, for the normalized average
    # what separates a prompt from its answer (lm-eval's target_delimiter): a decoder-only model generates
    # after prompt + delimiter (trailing spaces left to the answer's tokens); log-likelihood scores
    # delimiter + option
    target_delimiter: str = " "
    stop: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mode -> stop strings of the protocol
    answer_phrases: tuple[str, ...] = ()  # CoT answer markers in the prompt's language ("Die Antwort ist")
    text: str = ""  # the item's own content (question, options, passage): what training data must not contain
    meta: dict = field(default_factory=dict)  # benchmark-specific facts (RTP: the prompt's toxicity, challenging)


@dataclass
class Benchmark:
    name: str
    items: list[EvalItem]
    aggregate: Literal["micro", "macro"] = "macro"
    notes: list[str] = field(default_factory=list)
    source: dict | None = None  # where its files came from (flanlab.data.resolve): a path, or Hub repo@commit


def _existing(path) -> Path:
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

LETTERS = ("A", "B", "C", "D")


def _mmlu_rows(f: Path) -> list[list[str]]:
    """Header-less `question,A,B,C,D,answer` rows; fields may hold quoted commas and newlines."""
    rows = []
    with io.StringIO(read_text(f), newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            for row in reader:
                if len(row) != 6:
                    raise FlanlabError(f"line {reader.line_num}: {len(row)} columns, expected 6 (question, A, B, C, D, "
                                       "answer)", file=f)
                if row[5].strip() not in LETTERS:
                    raise FlanlabError(f"line {reader.line_num}: answer must be one of A, B, C, D, got {row[5]!r}",
                                       file=f, field="answer")
                rows.append(row[:5] + [row[5].strip()])
        except csv.Error as e:  # e.g. a file cut inside a quoted field
            raise FlanlabError(f"line {reader.line_num}: malformed CSV ({e})", file=f) from None
    return rows


def _mmlu_q(row, style="letter_dot") -> str:
    q, a, b, c, d, _ = row
    if style == "letter_dot":  # lm-eval's mmlu template, character for character
        return f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
    return f"Q: {q.strip()}\n(A) {a} (B) {b} (C) {c} (D) {d}\n{COT_A}"


def load_mmlu(path, shots: int = 5, subjects: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream layout (hendrycks/test data.tar): {path}/dev/<subject>_dev.csv, {path}/test/<subject>_test.csv,
    header-less rows `question,A,B,C,D,answer`. Direct prompts are lm-eval's (`mmlu` task: first `shots` dev rows,
    " A".." D" continuations). CoT exemplars: {path}/cot_prompts.json, else the Flan CoT prompts shipped in lm-eval
    (tasks/mmlu/flan_cot_fewshot/_cot_prompts.json)."""
    root = _existing(path)
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
        dev_f = root / "dev" / f"{subject}_dev.csv"
        dev = _mmlu_rows(dev_f) if dev_f.is_file() else []
        if len(dev) < shots:
            raise FlanlabError(f"{shots}-shot needs {shots} dev rows, found {len(dev)}", file=dev_f)
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        shot_block = "".join(f"{_mmlu_q(r)} {r[5]}\n\n" for r in dev[:shots])
        for i, row in enumerate(_mmlu_rows(tf)[:limit]):
            prompts = {"direct": head + shot_block + _mmlu_q(row)}
            if subject in cot:
                prompts["cot"] = cot[subject].rstrip() + "\n\n" + _mmlu_q(row, "paren")
            items.append(EvalItem(f"mmlu/{subject}/{i}", subject, [row[5]], prompts, "letter", list(LETTERS), 25.0,
                                  stop={"direct": ("\n",), "cot": ("\n\n", "\nQ:")}, text="\n".join(row[:5])))
        if subject not in cot:
            notes.append(f"no CoT exemplars for {subject}")
    return Benchmark("mmlu", items, "micro", notes)


# ---------------------------------------------------------------------------- BBH

BBH_STOP = ("</s>", "Q", "\n\n")  # lm-eval's bbh fewshot / cot_fewshot stop strings


def parse_bbh_cot_prompt(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Upstream cot-prompts/<task>.txt: a canary line and a `-----` line, then a description and
    'Q: ...\nA: Let's think step by step.\n<reasoning> So the answer is X.' blocks."""
    lines = text.splitlines()
    if "-----" in lines:
        lines = lines[lines.index("-----") + 1:]
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


def _bbh_random(exs: list[dict]) -> list[float]:
    """Each example's chance of being right by guessing, in %: 1 / its options for a multiple-choice task (options
    "(A) ..." listed in its input), 1 / the label set for a task with two or three labels (True/False, valid/invalid),
    0 for free-form answers. A multiple-choice task is one most of whose inputs list options, so a malformed target
    ("Monsters, Inc" in movie_recommendation) does not turn it free-form. Averaged over the evaluated items."""
    counts = [len(re.findall(r"^\([A-R]\)", e["input"], re.M)) for e in exs]
    if sum(c > 0 for c in counts) * 2 > len(exs):
        typical = sorted(c for c in counts if c)[len([c for c in counts if c]) // 2]
        return [100.0 / max(c or typical, 2) for c in counts]  # a question with one option listed is cut short
    golds = {e["target"] for e in exs}
    return [100.0 / len(golds) if 1 < len(golds) <= 3 else 0.0] * len(exs)


def _read_json(f: Path):
    try:
        return json.loads(read_text(f))
    except json.JSONDecodeError as e:
        raise FlanlabError(f"line {e.lineno} column {e.colno}: invalid JSON ({e.msg})", file=f) from None


def load_bbh(path=None, shots: int = 3, tasks: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream layout (suzgunmirac/BIG-Bench-Hard): {path}/bbh/<task>.json ({"canary", "examples": [{input, target}]})
    and {path}/cot-prompts/<task>.txt. CoT prompts fall back to lm-eval's bbh/cot_fewshot yaml. Prompts, stop
    strings and exemplars are lm-eval's bbh_fewshot / bbh_cot_fewshot ones; answers are scored by exact match
    after stripping white space and a trailing period (signs and brackets count)."""
    root = _existing(path)
    data_dir = root / "bbh" if (root / "bbh").is_dir() else root
    files = sorted(data_dir.glob("*.json"))
    if not files:
        raise FlanlabError("no <task>.json files", file=data_dir, field="path")
    items, notes = [], []
    for f in files:
        task = f.stem
        if tasks and task not in tasks:
            continue
        data = _read_json(f)
        exs = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(exs, list):
            raise FlanlabError('expected {"examples": [{"input", "target"}]}', file=f, field="examples")
        for i, e in enumerate(exs):
            if not isinstance(e, dict) or not isinstance(e.get("input"), str) or not isinstance(e.get("target"), str):
                raise FlanlabError("example needs string 'input' and 'target'", file=f, field=f"examples[{i}]")
        pf = root / "cot-prompts" / f"{task}.txt"
        desc, cot_shots = parse_bbh_cot_prompt(read_text(pf)) if pf.is_file() else (
            _bbh_lm_eval(task) or ("", []))
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
        kept = [(e, r) for i, (e, r) in enumerate(zip(exs, rnd)) if i not in used][:limit]
        for i, (e, r) in enumerate(kept):
            prompts = {"direct": direct + f"Q: {e['input']}\nA:"}
            if cot_shots:
                prompts["cot"] = cotp + f"Q: {e['input']}\n{COT_A}\n"
            items.append(EvalItem(f"bbh/{task}/{i}", task, [e["target"]], prompts, "exact", None, r,
                                  stop={"direct": BBH_STOP, "cot": BBH_STOP}, text=e["input"]))
    return Benchmark("bbh", items, "macro", notes)


# ---------------------------------------------------------------------------- TyDiQA-GoldP

def _squad(f: Path) -> list[dict]:
    d = _read_json(f)
    out = []
    try:
        for a, art in enumerate(d["data"]):
            for p, para in enumerate(art["paragraphs"]):
                for q, qa in enumerate(para["qas"]):
                    where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                    if not qa.get("answers"):
                        raise FlanlabError("question without answers", file=f, field=where)
                    out.append({"id": qa["id"], "context": para["context"], "question": qa["question"],
                                "answers": [x["text"] for x in qa["answers"]]})
    except (KeyError, TypeError) as e:
        raise FlanlabError(f"not SQuAD format (data[].paragraphs[].qas[]): missing {e}", file=f, field="data") from None
    return out


def load_tydiqa(path, shots: int = 1, languages: list[str] | None = None, limit: int | None = None) -> Benchmark:
    """Upstream files: {path}/tydiqa-goldp-v1.1-dev.json (SQuAD format; language = id prefix) and optionally
    tydiqa-goldp-v1.1-train.json for the 1-shot exemplars (else another dev example of the language)."""
    root = _existing(path)
    dev = root / "tydiqa-goldp-v1.1-dev.json" if root.is_dir() else root
    if not dev.is_file():
        raise FlanlabError("missing tydiqa-goldp-v1.1-dev.json", file=root, field="path")
    rows = _squad(dev)
    train_f = dev.parent / "tydiqa-goldp-v1.1-train.json"
    train = _squad(train_f) if train_f.is_file() else []
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        by_lang.setdefault(r["id"].split("-")[0], []).append(r)
    train_by_lang: dict[str, list[dict]] = {}
    for r in train:
        train_by_lang.setdefault(r["id"].split("-")[0], []).append(r)
    items = []
    for lang, rs in sorted(by_lang.items()):
        if languages and lang not in languages:
            continue
        for i, r in enumerate(rs[:limit]):
            pool = train_by_lang.get(lang) or [x for x in rs if x["id"] != r["id"]]
            shot = "".join(f"{_tydiqa_q(x)} {x['answers'][0]}\n\n" for x in pool[:shots])
            items.append(EvalItem(f"tydiqa/{r['id']}", lang, r["answers"], {"direct": shot + _tydiqa_q(r)}, "span",
                                  stop={"direct": ("\n",)}, text=f"{r['context']}\n{r['question']}"))
    return Benchmark("tydiqa", items, "macro")


def _tydiqa_q(r: dict) -> str:
    return f"{r['context']}\n\nQ: {r['question']}\n\nA:"


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

GSM_STOP = ("Q:", "</s>", "<|im_end|>")  # lm-eval's gsm8k-cot


def _math_items(name: str, group: str, rows: list[tuple[str, str]], exemplars: list[tuple[str, str, str]], shots: int,
                limit, ask: tuple[str, str] = ("Q: ", "A: "), phrases: tuple[str, ...] = ("The answer is",)
                ) -> list[EvalItem]:
    """Wei et al.'s format (lm-eval's gsm8k-cot): "Q: q\nA: <reasoning> The answer is N.\n\n" exemplars
    ((question, CoT answer, number) triples), in the exemplars' own language for native MGSM (`ask` = its
    question/answer prefixes, `phrases` its answer markers). Direct prompts use the same exemplars, answer only."""
    ex = exemplars[:shots]
    q_pre, a_pre = ask
    direct = "".join(f"{q_pre}{q}\n{a_pre}{n}\n\n" for q, _, n in ex)
    cot = "".join(f"{q_pre}{q}\n{a_pre}{c}\n\n" for q, c, _ in ex)
    stop = (q_pre.strip(),) + GSM_STOP[1:]
    return [EvalItem(f"{name}/{group}/{i}", group, [a], {"direct": direct + f"{q_pre}{q}\n{a_pre.rstrip()}",
                                                          "cot": cot + f"{q_pre}{q}\n{a_pre.rstrip()}"}, "number",
                     stop={"direct": stop + ("\n",), "cot": stop}, answer_phrases=phrases, text=q)
            for i, (q, a) in enumerate(rows[:limit])]


def _gsm_exemplars() -> list[tuple[str, str, str]]:
    return [(q, f"{r} The answer is {n}.", n) for q, r, n in GSM_EXEMPLARS]


_PREFIX_RE = re.compile(r"^(.*?[:：]\s*)(.*)$", re.S)


def _native_exemplars(d: dict, lang: str, f: Path):
    """MGSM's exemplars.json (upstream exemplars.py as data): q = "<Question>: ...", a = "<Step-by-step answer>:
    <reasoning> <The answer is> N." Returns ((question prefix, answer prefix), answer phrases,
    [(question, CoT answer, number)]). A phrase is the last sentence of an answer up to its number
    ("Die Antwort ist", "Die Antwort lautet", "答えは")."""
    try:
        shots = d["MGSM_EXEMPLARS"][lang]
        numbers = d["EXEMPLAR_NUMBER_ANSWERS"]
    except (KeyError, TypeError) as e:
        raise FlanlabError(f"missing {e} (expected MGSM_EXEMPLARS[lang], EXEMPLAR_NUMBER_ANSWERS)", file=f) from None
    out, ask, phrases = [], ("", ""), []
    for k in sorted(shots, key=int):
        q, a, n = shots[k]["q"], shots[k]["a"], str(numbers[int(k) - 1])
        qm, am = _PREFIX_RE.match(q), _PREFIX_RE.match(a)
        last = list(re.finditer(r"\d+", a))
        if not qm or not am or not last or last[-1].group(0) != n:
            raise FlanlabError(f"exemplar {k} of '{lang}' needs 'prefix:' in q and a, and a ending in its answer {n}",
                               file=f, field=f"MGSM_EXEMPLARS.{lang}")
        ask = (qm.group(1), am.group(1))
        tail = re.search(r"\D*$", a[: last[-1].start()]).group(0)
        phrase = re.split(r"[.。।!?]\s*", tail)[-1].strip()
        if phrase and phrase not in phrases:
            phrases.append(phrase)
        out.append((qm.group(2), am.group(2), n))
    # a phrase that ends with a shorter one ("ลูก คำตอบคือ") adds nothing to extraction
    return ask, tuple(p for p in phrases if not any(q != p and p.endswith(q) for q in phrases)), out


def load_mgsm(path, shots: int = 8, languages: list[str] | None = None, limit: int | None = None,
              exemplars: Literal["native", "en"] = "native") -> Benchmark:
    """Upstream files {path}/mgsm_<lang>.tsv (`question<TAB>answer_number`, no header; numbers may carry a
    thousands comma). Exemplars: native-language CoT from {path}/exemplars.json (upstream exemplars.py as data;
    the paper's default), or the 8 English CoT exemplars ("en", also the fallback without the file)."""
    root = _existing(path)
    files = sorted(root.glob("mgsm_*.tsv"))
    if not files:
        raise FlanlabError("no mgsm_<lang>.tsv files", file=root, field="path")
    ex_f = root / "exemplars.json"
    native = _read_json(ex_f) if exemplars == "native" and ex_f.is_file() else None
    items = []
    for f in files:
        lang = f.stem.split("_", 1)[1]
        if languages and lang not in languages:
            continue
        rows = []
        for n, cols in read_tsv(f, ("question", "answer_number")):
            number = cols[1].strip().replace(",", "")
            if not re.fullmatch(r"-?\d+(\.\d+)?", number):
                raise FlanlabError(f"line {n}: answer {cols[1]!r} is not a number", file=f)
            rows.append((cols[0], number))
        if native is not None and lang in native.get("MGSM_EXEMPLARS", {}):
            ask, phrases, shots_ = _native_exemplars(native, lang, ex_f)
            items += _math_items("mgsm", lang, rows, shots_, shots, limit, ask, phrases)
        else:
            items += _math_items("mgsm", lang, rows, _gsm_exemplars(), shots, limit)
    return Benchmark("mgsm", items, "macro")


def load_gsm8k(path, shots: int = 8, limit: int | None = None) -> Benchmark:
    """Upstream test.jsonl: {"question", "answer": "<reasoning> #### <number>"}."""
    f = _existing(path)
    if f.is_dir():
        f = f / "test.jsonl"
    rows = []
    for n, line in read_text_lines(_existing(f)):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if "####" not in d["answer"]:
                raise KeyError("'#### N' in answer")
            rows.append((d["question"], d["answer"].split("####")[-1].strip().replace(",", "")))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise FlanlabError(f"line {n}: needs 'question' and 'answer' ending in '#### N' ({e})", file=f) from None
    return Benchmark("gsm8k", _math_items("gsm8k", "gsm8k", rows, _gsm_exemplars(), shots, limit), "macro")


# ---------------------------------------------------------------------------- BIG-bench JSON

def load_bigbench(tasks: list[str], root=None, shots: int = 0, limit: int | None = None) -> Benchmark:
    """BIG-bench JSON tasks, evaluated on their test split only (the content-hash split that mixtures never train
    on), with few-shot exemplars from the train split."""
    from ..tasks.sources.bigbench import bigbench_task, list_bigbench_tasks, missing_task_hint
    import fnmatch
    avail = list_bigbench_tasks(str(root) if root else None)
    names = [n for pat in tasks for n in avail if fnmatch.fnmatch(n, pat)]
    if not names:
        raise FlanlabError(f"no BIG-bench task matches {tasks}{missing_task_hint(root)}", field="subsets")
    items = []
    for name in names:
        t = bigbench_task(name, root)
        tpl = t.get_templates()[0]
        shot_block = "".join(f"{tpl.render(e)[0].rstrip()}{TARGET_DELIMITER}{e.answer}\n\n"
                             for e in t.examples("train", shots))
        for i, e in enumerate(t.examples("test", limit)):
            q = tpl.render(e)[0].rstrip()
            prompts = {"direct": shot_block + q, "cot": shot_block + q + f" {COT_TRIGGER}"}
            golds = list(e.aliases or [e.answer])
            rnd = 100.0 / len(e.options) if e.options else 0.0
            items.append(EvalItem(f"bigbench/{name}/{i}", name, golds, prompts, "choice" if e.options else "text",
                                  list(e.options) if e.options else None, rnd, TARGET_DELIMITER))
    return Benchmark("bigbench", items, "macro")


# ---------------------------------------------------------------------------- built-in suite

def load_synthetic(registry, patterns: list[str], shots: int = 0, limit: int | None = 100, options: bool = False,
                   name: str = "synthetic", exemplar_only: bool = False) -> Benchmark:
    """Tasks of the built-in suite (e.g. held-out categories), test split, prompts in the training formats
    (exemplar_only: `shots` bare input/answer pairs and the bare query, direct mode only)."""
    import random
    if patterns == ["held_out"]:
        tasks = registry.held_out()
    elif patterns == ["held_in"]:
        tasks = [t for t in registry if not t.held_out and not t.benchmark_source and t.collection == "synthetic"]
    else:
        tasks = registry.select(patterns)
    if not tasks:
        raise FlanlabError(f"no task matches {patterns}", field="subsets")
    items = []
    for t in tasks:
        tpl = t.get_templates()[0]
        for i, ex in enumerate(t.examples("test", limit)):
            rng = random.Random(i)
            shot_ids = rng.sample(range(t.size("train")), min(shots, t.size("train")))
            exemplars = [t.get("train", j) for j in shot_ids]
            prompts = {}
            for mode, cot in (("direct", False), ("cot", True)):
                if cot and (ex.rationale is None or exemplar_only):
                    continue
                fmt = Format(shots, options and not exemplar_only, cot, exemplar_only=exemplar_only)
                prompts[mode] = render_example(t, ex, tpl, fmt, exemplars=exemplars, trigger=COT_TRIGGER)["inputs"]
            at = t.category.answer_type
            rnd = 100.0 / len(ex.options) if at == "choice" and ex.options else 0.0
            items.append(EvalItem(f"{name}/{t.name}/{i}", t.name, [ex.answer], prompts, at,
                                  list(ex.options) if ex.options else None, rnd, TARGET_DELIMITER))
    return Benchmark(name, items, "macro")
