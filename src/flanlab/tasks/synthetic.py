"""The built-in, procedurally generated task suite (the embedded default collection).

Datasets are item families (word lists, number ranges, number lists, boolean formulas,
key-value tables); task categories are operations on items. Every generator also writes a
step-by-step rationale, so chain-of-thought data exists for every task.
"""
from __future__ import annotations

import random
from typing import Callable

from .model import Dataset, GeneratedSource, Task, TaskCategory, Template

WORDS = {  # item spaces are small; splits deal whole items (see GeneratedSource), so each list has 40 words
    "animals": ("cat dog horse zebra tiger otter camel eagle snake whale mouse panda koala lemur bison moose llama raven "
                "shark squid beaver badger bear crab crane deer duck ferret frog goat gorilla hyena lion lynx mole "
                "newt owl rabbit seal wolf").split(),
    "fruits": ("apple grape lemon mango peach pear plum melon kiwi cherry guava lime papaya banana olive date fig quince "
               "apricot avocado berry citron coconut currant durian feijoa grapefruit jujube kumquat lychee mulberry "
               "nectarine orange persimmon pineapple pomelo raisin tamarind yuzu lingonberry").split(),
    "colors": ("red blue green black white purple orange yellow violet indigo amber ivory maroon teal silver golden coral "
               "azure beige bronze cobalt crimson cyan emerald fuchsia gray jade khaki lavender lilac magenta mauve navy "
               "ochre olive peach pink ruby saffron scarlet").split(),
    "tools": ("hammer saw drill wrench chisel rake shovel ladder pliers axe clamp file level trowel spade vise anvil "
              "auger awl broom crowbar hatchet hoe jack knife lathe mallet mattock pick plane plunger ruler sander "
              "scraper screwdriver scythe shears sickle tongs wedge").split(),
}
VOWELS = set("aeiou")

# dataset name -> (item type, train size)
DATASETS: dict[str, tuple[str, int]] = {
    "animals": ("word", 3000), "fruits": ("word", 1500), "colors": ("word", 800), "tools": ("word", 400),
    "digits": ("int", 600), "tens": ("int", 2000), "hundreds": ("int", 5000),
    "short_lists": ("int_list", 2500), "long_lists": ("int_list", 1000),
    "word_triples": ("word_list", 1200), "word_quads": ("word_list", 600),
    "bool_pairs": ("bool_expr", 900), "bool_triples": ("bool_expr", 1800),
    "small_tables": ("kv", 1500), "large_tables": ("kv", 700),
}
SPLIT_SIZES = {"validation": 50, "test": 100}

# ---------------------------------------------------------------- item samplers


def _sample(kind: str, ds: str, rng: random.Random):
    if kind == "word":
        return rng.choice(WORDS[ds])
    if kind == "int":
        lo, hi = {"digits": (1, 9), "tens": (10, 99), "hundreds": (100, 999)}[ds]
        return rng.randint(lo, hi)
    if kind == "int_list":
        n = rng.randint(3, 4) if ds == "short_lists" else rng.randint(5, 7)
        return [rng.randint(0, 9) for _ in range(n)]
    if kind == "word_list":
        pool = WORDS["animals"] + WORDS["fruits"]
        return rng.sample(pool, 3 if ds == "word_triples" else 4)
    if kind == "bool_expr":
        n = 2 if ds == "bool_pairs" else 3
        return [(rng.random() < 0.5, rng.random() < 0.3) for _ in range(n)], [rng.choice(["and",
                                                                                          "or"]) for _ in range(n - 1)]
    if kind == "kv":
        n = 3 if ds == "small_tables" else 6
        keys = rng.sample("abcdefghjkmnpqrstuvwxyz", n)
        return [(k, rng.randint(0, 99)) for k in keys]
    raise ValueError(kind)


def _distract_str(answer: str, rng: random.Random, pool: list[str]) -> tuple[str, ...]:
    cands: set[str] = set()
    tries = 0
    while len(cands) < 3 and tries < 50:
        tries += 1
        s = list(answer)
        r = rng.random()
        if r < 0.4 and len(s) > 1:
            i, j = rng.sample(range(len(s)), 2)
            s[i], s[j] = s[j], s[i]
        elif r < 0.7 and len(s) > 1:
            del s[rng.randrange(len(s))]
        else:
            s = list(rng.choice(pool)) if pool else s + ["x"]
        c = "".join(s)
        if c != answer:
            cands.add(c)
    opts = [answer] + sorted(cands)
    rng.shuffle(opts)
    return tuple(opts)


def _distract_int(answer: int, rng: random.Random) -> tuple[str, ...]:
    cands = set()
    for d in (1, -1, 2, -2, 10, -10, 3):
        if len(cands) == 3:
            break
        if rng.random() < 0.7 and answer + d >= 0:
            cands.add(answer + d)
    while len(cands) < 3:
        cands.add(answer + rng.randint(4, 20))
    opts = [str(answer)] + [str(c) for c in sorted(cands)]
    rng.shuffle(opts)
    return tuple(opts)


def _example(fields, answer, rationale, options):
    return {"fields": fields, "answer": str(answer), "rationale": rationale, "options": options}


def _letters(w: str) -> str:
    return ", ".join(w)


# ---------------------------------------------------------------- categories: word -> *

def reverse_word(rng, item):
    w = item
    r = w[::-1]
    return _example({"word": w}, r, f"The letters of {w} are {_letters(w)}. In reverse order they are {_letters(r)}. Joined together that is {r}.",
               _distract_str(r, rng, [x[::-1] for x in WORDS["animals"]]))


def uppercase(rng, item):
    w = item
    return _example({"word": w}, w.upper(), f"Each letter of {w} as a capital: {_letters(w.upper())}. Joined together that is {w.upper()}.",
               _distract_str(w.upper(), rng, [x.upper() for x in WORDS["fruits"]]))


def first_letter(rng, item):
    w = item
    return _example({"word": w}, w[0], f"The letters of {w} are {_letters(w)}. The first one is {w[0]}.",
               _distract_str(w[0], rng, list("abcdefghijklmnopqrstuvwxyz")))


def last_letter(rng, item):
    w = item
    return _example({"word": w}, w[-1], f"The letters of {w} are {_letters(w)}. The last one is {w[-1]}.",
               _distract_str(w[-1], rng, list("abcdefghijklmnopqrstuvwxyz")))


def word_length(rng, item):
    w = item
    steps = ", ".join(f"{i + 1} {c}" for i, c in enumerate(w))
    return _example({"word": w}, len(w), f"Counting the letters of {w}: {steps}. There are {len(w)} letters.",
                    _distract_int(len(w), rng))


def count_vowels(rng, item):
    w = item
    vs = [c for c in w if c in VOWELS]
    found = ", ".join(vs) if vs else "none"
    return _example({"word": w}, len(vs), f"The letters of {w} are {_letters(w)}. The vowels among them are {found}. That is {len(vs)} vowels.",
               _distract_int(len(vs), rng))


def spell_word(rng, item):
    w = item
    a = "-".join(w)
    return _example({"word": w}, a, f"The letters of {w} are {_letters(w)}. Joined with hyphens that is {a}.",
                    _distract_str(a, rng, []))


# ---------------------------------------------------------------- int -> *

def parity(rng, item):
    n = item
    d = n % 10
    p = "even" if n % 2 == 0 else "odd"
    return _example({"number": n}, p, f"The last digit of {n} is {d}. {d} is {p}, so {n} is {p}.", ("even", "odd"))


def successor(rng, item):
    n = item
    return _example({"number": n}, n + 1, f"The number after {n} is {n} + 1 = {n + 1}.", _distract_int(n + 1, rng))


def predecessor(rng, item):
    n = item
    return _example({"number": n}, n - 1, f"The number before {n} is {n} - 1 = {n - 1}.", _distract_int(n - 1, rng))


def double_number(rng, item):
    n = item
    return _example({"number": n}, 2 * n, f"Twice {n} is {n} + {n} = {2 * n}.", _distract_int(2 * n, rng))


def _pair(rng, sample):
    return sample(rng), sample(rng)


def add_numbers(rng, sample):
    a, b = _pair(rng, sample)
    s = a + b
    units = (a % 10) + (b % 10)
    rest = (a - a % 10) + (b - b % 10)
    rat = f"Split the numbers: {a - a % 10} + {b - b % 10} = {rest} and {a % 10} + {b % 10} = {units}. Then {rest} + {units} = {s}."
    return _example({"a": a, "b": b}, s, rat, _distract_int(s, rng))


def subtract_numbers(rng, sample):
    a, b = sorted(_pair(rng, sample), reverse=True)
    d = a - b
    mid = a - (b - b % 10)
    rat = f"First {a} - {b - b % 10} = {mid}. Then {mid} - {b % 10} = {d}."
    return _example({"a": a, "b": b}, d, rat, _distract_int(d, rng))


def compare_numbers(rng, sample):
    a, b = _pair(rng, sample)
    while b == a:
        b = sample(rng)
    big = max(a, b)
    rel = "greater" if a > b else "smaller"
    return _example({"a": a, "b": b}, big, f"{a} is {rel} than {b}, so the larger number is {big}.", (str(a), str(b)))


# ---------------------------------------------------------------- int_list -> *

def _fmt(xs):
    return " ".join(str(x) for x in xs)


def sort_list(rng, xs):
    s = sorted(xs)
    return _example({"numbers": _fmt(xs)}, _fmt(s), f"Ordering {_fmt(xs)} from smallest to largest: {' <= '.join(map(str, s))}. So the sorted list is {_fmt(s)}.",
               _distract_str(_fmt(s), rng, []))


def _running(xs, better, word):
    cur = xs[0]
    steps = [f"start with {cur}"]
    for x in xs[1:]:
        if better(x, cur):
            cur = x
            steps.append(f"{x} is {word}, keep {x}")
        else:
            steps.append(f"{x} is not {word}, keep {cur}")
    return cur, "; ".join(steps)


def list_max(rng, xs):
    m, st = _running(xs, lambda a, b: a > b, "larger")
    return _example({"numbers": _fmt(xs)}, m, f"Go through {_fmt(xs)}: {st}. The largest is {m}.",
                    _distract_int(m, rng))


def list_min(rng, xs):
    m, st = _running(xs, lambda a, b: a < b, "smaller")
    return _example({"numbers": _fmt(xs)}, m, f"Go through {_fmt(xs)}: {st}. The smallest is {m}.",
                    _distract_int(m, rng))


def list_sum(rng, xs):
    total, steps = xs[0], []
    for x in xs[1:]:
        steps.append(f"{total} + {x} = {total + x}")
        total += x
    return _example({"numbers": _fmt(xs)}, total, f"Add them one at a time: {', '.join(steps)}. The sum is {total}.",
                    _distract_int(total, rng))


def reverse_list(rng, xs):
    r = xs[::-1]
    return _example({"numbers": _fmt(xs)}, _fmt(r), f"Reading {_fmt(xs)} from the end: {', '.join(map(str, r))}. So the reversed list is {_fmt(r)}.",
               _distract_str(_fmt(r), rng, []))


def count_even(rng, xs):
    ev = [x for x in xs if x % 2 == 0]
    found = ", ".join(map(str, ev)) if ev else "none"
    return _example({"numbers": _fmt(xs)}, len(ev),
                    f"The even numbers in {_fmt(xs)} are {found}. That is {len(ev)} numbers.", _distract_int(len(ev), rng))


# ---------------------------------------------------------------- word_list -> *

def alphabetical_first(rng, ws):
    s = sorted(ws)
    return _example({"words": ", ".join(ws)}, s[0],
                    f"In alphabetical order the words are {', '.join(s)}. The first is {s[0]}.", tuple(ws))


def join_words(rng, ws):
    j = "-".join(ws)
    return _example({"words": ", ".join(ws)}, j,
                    f"The words in order are {', '.join(ws)}. Joined with hyphens that is {j}.", _distract_str(j, rng, []))


def count_words(rng, ws):
    steps = ", ".join(f"{w} ({i + 1})" for i, w in enumerate(ws))
    return _example({"words": ", ".join(ws)}, len(ws), f"Counting the words: {steps}. There are {len(ws)} words.",
                    _distract_int(len(ws), rng))


# ---------------------------------------------------------------- bool_expr, kv

def evaluate_boolean(rng, item):
    lits, ops = item
    vals, texts, steps = [], [], []
    for v, neg in lits:
        if neg:
            texts.append(f"not {v}")
            vals.append(not v)
            steps.append(f"not {v} is {not v}")
        else:
            texts.append(str(v))
            vals.append(v)
    cur, expr = vals[0], texts[0]
    for i, (op, t, v) in enumerate(zip(ops, texts[1:], vals[1:])):
        new = (cur and v) if op == "and" else (cur or v)
        steps.append(f"{cur} {op} {v} is {new}")
        expr = f"{expr} {op} {t}" if i == 0 else f"({expr}) {op} {t}"
        cur = new
    return _example({"expression": expr}, cur, ". ".join(steps) + f". The expression is {cur}.", ("True", "False"))


def key_lookup(rng, table):
    k, v = rng.choice(table)
    ctx = ", ".join(f"{a} = {b}" for a, b in table)
    return _example({"table": ctx, "key": k}, v, f"In the table, the entry for {k} reads {k} = {v}. So {k} is {v}.",
                    _distract_int(v, rng))


def T(*inputs: str) -> tuple[Template, ...]:
    return tuple(Template(i) for i in inputs)


# category name -> (item type, function, answer type, templates, takes_sampler)
CATEGORIES: dict[str, tuple[str, Callable, str, tuple[Template, ...], bool]] = {
    "reverse_word": ("word", reverse_word, "text", T("Reverse the letters of the word \"{word}\".",
                                                     "Write {word} backwards.", "What is {word} spelled in reverse order?"), False),
    "uppercase": ("word", uppercase, "text", T("Write \"{word}\" in capital letters.", "Convert {word} to upper case.",
                                               "{word}\n\nHow is this word written in all caps?"), False),
    "first_letter": ("word", first_letter, "text", T("What is the first letter of \"{word}\"?",
                                                     "Which letter does {word} start with?", "Word: {word}\nFirst letter:"), False),
    "last_letter": ("word", last_letter, "text", T("What is the last letter of \"{word}\"?",
                                                   "Which letter does {word} end with?", "Word: {word}\nLast letter:"), False),
    "word_length": ("word", word_length, "number", T("How many letters are in \"{word}\"?",
                                                     "Count the letters of the word {word}.", "Word: {word}\nNumber of letters:"), False),
    "count_vowels": ("word", count_vowels, "number", T("How many vowels does \"{word}\" contain?",
                                                       "Count the vowels (a, e, i, o, u) in {word}.", "Word: {word}\nNumber of vowels:"), False),
    "spell_word": ("word", spell_word, "text", T("Spell \"{word}\" letter by letter with hyphens.",
                                                 "Split {word} into its letters, joined by -.", "Word: {word}\nSpelled out:"), False),
    "parity": ("int", parity, "choice", T("Is {number} even or odd?",
                                          "Tell whether the number {number} is odd or even.", "Number: {number}\nParity:"), False),
    "successor": ("int", successor, "number", T("What number comes right after {number}?",
                                                "What is {number} plus one?", "Number: {number}\nNext number:"), False),
    "predecessor": ("int", predecessor, "number", T("What number comes right before {number}?",
                                                    "What is {number} minus one?", "Number: {number}\nPrevious number:"), False),
    "double_number": ("int", double_number, "number", T("What is twice {number}?", "Double the number {number}.",
                                                        "Number: {number}\nTwo times it:"), False),
    "add_numbers": ("int", add_numbers, "number", T("What is {a} plus {b}?", "Add {a} and {b}.", "{a} + {b} ="), True),
    "subtract_numbers": ("int", subtract_numbers, "number", T("What is {a} minus {b}?", "Subtract {b} from {a}.",
                                                              "{a} - {b} ="), True),
    "compare_numbers": ("int", compare_numbers, "number", T("Which is larger, {a} or {b}?",
                                                            "Name the bigger number: {a}, {b}.", "Numbers: {a} and {b}\nLarger:"), True),
    "sort_list": ("int_list", sort_list, "text", T("Sort these numbers from smallest to largest: {numbers}",
                                                   "Put {numbers} in ascending order.", "List: {numbers}\nSorted:"), False),
    "list_max": ("int_list", list_max, "number", T("What is the largest number in: {numbers}?",
                                                   "Find the maximum of {numbers}.", "List: {numbers}\nMaximum:"), False),
    "list_min": ("int_list", list_min, "number", T("What is the smallest number in: {numbers}?",
                                                   "Find the minimum of {numbers}.", "List: {numbers}\nMinimum:"), False),
    "list_sum": ("int_list", list_sum, "number", T("What is the sum of {numbers}?", "Add up the numbers {numbers}.",
                                                   "List: {numbers}\nSum:"), False),
    "reverse_list": ("int_list", reverse_list, "text", T("Reverse the list: {numbers}",
                                                         "Write {numbers} in reverse order.", "List: {numbers}\nReversed:"), False),
    "count_even": ("int_list", count_even, "number", T("How many even numbers are in: {numbers}?",
                                                       "Count the even numbers among {numbers}.", "List: {numbers}\nEven count:"), False),
    "alphabetical_first": ("word_list", alphabetical_first, "text",
                           T("Which word comes first alphabetically: {words}?", "Of {words}, which is first in dictionary order?", "Words: {words}\nFirst alphabetically:"), False),
    "join_words": ("word_list", join_words, "text", T("Join these words with hyphens: {words}",
                                                      "Connect {words} into one string using -.", "Words: {words}\nJoined:"), False),
    "count_words": ("word_list", count_words, "number", T("How many words are in this list: {words}?",
                                                          "Count the words: {words}.", "Words: {words}\nCount:"), False),
    "evaluate_boolean": ("bool_expr", evaluate_boolean, "choice", T("Evaluate: {expression}",
                                                                    "Is the expression {expression} True or False?", "Expression: {expression}\nValue:"), False),
    "key_lookup": ("kv", key_lookup, "number", T("{table}\n\nWhat is the value of {key}?",
                                                 "Given {table}, what is {key}?", "Table: {table}\nLookup {key}:"), False),
}

DEFAULT_HELD_OUT_CATEGORIES = ("predecessor", "list_min", "last_letter", "count_even")


def _make_gen(cat: str, ds: str):
    kind, fn, _, _, takes_sampler = CATEGORIES[cat]

    def gen(rng):
        if takes_sampler:
            return fn(rng, lambda r: _sample(kind, ds, r))
        return fn(rng, _sample(kind, ds, rng))
    return gen


def build_synthetic_tasks(held_out_categories=DEFAULT_HELD_OUT_CATEGORIES, seed: int = 0) -> list[Task]:
    tasks = []
    for cat, (kind, _, atype, templates, _) in CATEGORIES.items():
        category = TaskCategory(cat, templates, answer_type=atype)
        for ds, (ds_kind, train_size) in DATASETS.items():
            if ds_kind != kind:
                continue
            name = f"{cat}:{ds}"
            sizes = {"train": train_size, **SPLIT_SIZES}
            source = GeneratedSource(name, _make_gen(cat, ds), sizes, seed=seed)
            tasks.append(Task(Dataset(ds, source), category, collection="synthetic",
                              held_out=cat in held_out_categories))
    return tasks
