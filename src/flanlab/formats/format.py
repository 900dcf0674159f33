"""Instruction formats, as in Flan 2022: zero-shot or few-shot, with or without answer options,
with or without chain-of-thought, and input inversion; plus the paper's Figure 3 exemplar-only format
(few-shot input/answer pairs with no instruction or template text, as in Min et al. 2022).

CoT target: "<reasoning> So the answer is <answer>."
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import FlanlabError
from ..tasks.model import Example, Task, Template, as_sentence

COT_TRIGGER = "Let's think step by step."
COT_TRIGGERS = (COT_TRIGGER, "Answer by reasoning step-by-step.", "Explain your reasoning, then give the answer.")
ANSWER_PREFIX = "So the answer is"
INVERSION_PROMPTS = ("Answer: {answer}\n\nWhat is the question that this answers?",
                     "Here is an answer: {answer}\nWrite the input it belongs to.",
                     "{answer}\n\nGiven this output, what was the input?")
EXEMPLAR_SEP = "\n\n"
# between inputs and targets: in few-shot blocks, and for decoder-only models between the input and the target
TARGET_DELIMITER = "\n"


@dataclass(frozen=True)
class Format:
    few_shot: int = 0
    options: bool = False
    cot: bool = False
    inverted: bool = False
    exemplar_only: bool = False  # few-shot pairs of bare inputs and answers: no template, options or trigger

    @property
    def name(self) -> str:
        parts = ["zs" if self.few_shot == 0 else f"fs{self.few_shot}", "opt" if self.options else "noopt",
                 "cot" if self.cot else "direct"]
        if self.inverted:
            parts.append("inv")
        if self.exemplar_only:
            parts.append("exo")
        return "_".join(parts)


_FMT_RE = re.compile(r"^(zs|fs(\d+))_(opt|noopt)_(cot|direct)(_inv)?(_exo)?$")


def parse_format(name: str) -> Format:
    m = _FMT_RE.match(name)
    if not m:
        raise FlanlabError(f"bad format name '{name}' (e.g. zs_noopt_direct, fs3_opt_cot, zs_noopt_direct_inv, "
                           "fs3_noopt_direct_exo)", field="format")
    fmt = Format(int(m.group(2) or 0), m.group(3) == "opt", m.group(4) == "cot", bool(m.group(5)), bool(m.group(6)))
    if fmt.exemplar_only and (fmt.few_shot == 0 or fmt.options or fmt.cot or fmt.inverted):
        raise FlanlabError(f"bad format name '{name}': exemplar-only prompts are few-shot, direct, without options "
                           "(e.g. fs3_noopt_direct_exo)", field="format")
    return fmt


def bare_input(example: Example, raw_fields: Sequence[str] | None = None) -> str:
    """An example's input with no template text: its raw field values (all fields when `raw_fields` is None), one
    per line, in field order."""
    if raw_fields is not None and not raw_fields:
        raise FlanlabError(f"example {example.id} has no raw fields (its rows were rendered upstream): it cannot be "
                           "shown exemplar-only", field="exemplar_only")
    return "\n".join(str(v) for k, v in example.fields.items()
                     if (raw_fields is None or k in raw_fields) and str(v).strip())


def cot_target(rationale: str, answer: str) -> str:
    return f"{as_sentence(rationale)} {ANSWER_PREFIX} {answer}."


def options_block(options: Sequence[str]) -> str:
    return "\n\nOPTIONS:\n- " + "\n- ".join(options)


def _single(example: Example, template: Template, fmt: Format, task_name: str, trigger: str,
            raw_fields: Sequence[str] | None = None) -> tuple[str, str]:
    if fmt.exemplar_only:
        return bare_input(example, raw_fields), example.answer
    inp, tgt = template.render(example, task_name)
    if fmt.options and example.options:
        inp += options_block(example.options)
    if fmt.cot and not template.is_cot:  # a CoT template carries its own instruction and target
        if example.rationale is None:
            raise FlanlabError(f"CoT format requested but example {example.id} has no rationale",
                               file=f"task {task_name}", field="rationale")
        inp += f"\n\n{trigger}"
        tgt = cot_target(example.rationale, tgt)
    return inp, tgt


def render_example(task: Task | None, example: Example, template: Template, fmt: Format, *,
                   exemplars: Sequence[Example] = (), max_input_len: int | None = None,
                   length: Callable[[str], int] = lambda s: len(s.encode("utf-8")),
                   rng: random.Random | None = None, trigger: str | None = None) -> dict:
    """Render one example. Few-shot exemplars must not include the example itself; exemplars are
    dropped from the end while the input exceeds `max_input_len` (in `length` units, bytes by default).
    Returns {inputs, targets, format, n_exemplars}."""
    name = task.name if task is not None else "?"
    rng = rng or random.Random(0)
    if trigger is None:
        trigger = COT_TRIGGERS[rng.randrange(len(COT_TRIGGERS))] if fmt.cot else ""
    if fmt.inverted:
        inp, _ = template.render(example, name)
        prompt = INVERSION_PROMPTS[rng.randrange(len(INVERSION_PROMPTS))]
        return {"inputs": prompt.format(answer=example.answer), "targets": inp,
                "format": Format(0, False, False, True).name, "n_exemplars": 0}
    for ex in exemplars:
        if ex.id == example.id:
            raise FlanlabError(f"example {example.id} used as its own few-shot exemplar", file=f"task {name}",
                               field="exemplars")
    raw = task.raw_fields if task is not None else None
    query, target = _single(example, template, fmt, name, trigger, raw)
    shots = [_single(ex, template, fmt, name, trigger, raw) for ex in exemplars[: fmt.few_shot]]
    while True:
        blocks = [f"{i}{TARGET_DELIMITER}{t}" for i, t in shots] + [query]
        inputs = EXEMPLAR_SEP.join(blocks)
        if max_input_len is None or not shots or length(inputs) <= max_input_len:
            break
        shots.pop()
    used = Format(len(shots), fmt.options and example.options is not None, fmt.cot, False,
                  fmt.exemplar_only and bool(shots))
    return {"inputs": inputs, "targets": target, "format": used.name, "n_exemplars": len(shots)}
