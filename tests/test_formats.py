import random

import pytest

from flanlab.errors import FlanlabError
from flanlab.formats import Format, cot_target, parse_format, render_example
from flanlab.tasks.model import Example, Task, Dataset, TaskCategory, Template, ListSource

EX = Example(id="t/0", fields={"word": "moose"}, answer="esoom", options=("esoom", "moose", "esom"),
             rationale="The letters of moose are m, o, o, s, e. In reverse order they are e, s, o, o, m.")
SHOT = Example(id="t/1", fields={"word": "cat"}, answer="tac", options=("tac", "cat"), rationale="c, a, t reversed is t, a, c")
TPL = Template("Write {word} backwards.")
TASK = Task(Dataset("d", ListSource({"train": [EX, SHOT]})), TaskCategory("rev", (TPL,)))


def r(fmt, **kw):
    return render_example(TASK, EX, TPL, fmt, rng=random.Random(0), **kw)


def test_golden_zero_shot_direct():
    assert r(Format()) == {"inputs": "Write moose backwards.", "targets": "esoom", "format": "zs_noopt_direct", "n_exemplars": 0}


def test_golden_options():
    assert r(Format(options=True))["inputs"] == "Write moose backwards.\n\nOPTIONS:\n- esoom\n- moose\n- esom"


def test_golden_cot():
    out = r(Format(cot=True))
    assert out["inputs"].startswith("Write moose backwards.\n\n") and out["inputs"].count("\n\n") == 1
    assert out["targets"] == ("The letters of moose are m, o, o, s, e. In reverse order they are e, s, o, o, m."
                              " So the answer is esoom.")
    assert cot_target("a b", "c") == "a b. So the answer is c."


def test_golden_few_shot_and_budget():
    out = r(Format(few_shot=1), exemplars=[SHOT])
    assert out["inputs"] == "Write cat backwards.\ntac\n\nWrite moose backwards."
    assert out["format"] == "fs1_noopt_direct"
    short = r(Format(few_shot=1), exemplars=[SHOT], max_input_len=30)
    assert short["inputs"] == "Write moose backwards." and short["format"] == "zs_noopt_direct"


def test_few_shot_never_uses_the_example_itself():
    with pytest.raises(FlanlabError, match="own few-shot exemplar"):
        r(Format(few_shot=1), exemplars=[EX])


def test_inversion_swaps_input_and_target():
    out = r(Format(inverted=True))
    assert out["targets"] == "Write moose backwards." and "esoom" in out["inputs"]
    assert out["format"] == "zs_noopt_direct_inv"


def test_format_names_roundtrip():
    for f in (Format(), Format(3, True, True), Format(inverted=True), Format(1, False, True)):
        assert parse_format(f.name) == f
    with pytest.raises(FlanlabError):
        parse_format("fewshot")
