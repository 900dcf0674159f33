"""Scoring rules per benchmark: one regression test for each defect found by reviewing real outputs."""
import pytest

from flanlab.evaluate.benchmarks import EvalItem
from flanlab.evaluate.harness import canonical, score
from flanlab.evaluate.scoring import extract_choice, extract_cot_answer, majority_vote


def bbh(gold):
    return EvalItem("bbh/t/0", "t", [gold], {"direct": "Q: x\nA:", "cot": "Q: x\nA: Let's think step by step.\n"},
                    "exact")


def graded(item, output, mode="direct"):
    return score(item, canonical(item, output, mode))["score"]


@pytest.mark.parametrize("gold,output,expected", [
    ("-6", " 6", 0.0), ("-6", " -6", 1.0), ("-6", " -6.", 1.0),  # multistep_arithmetic: the sign counts
    (") ]", " ) ]", 1.0), (") ]", " ]", 0.0), (") ]", "", 0.0),  # dyck_languages: brackets are the answer
    ("no", " A: no", 0.0), ("no", " no", 1.0), ("No", " no", 0.0),  # nothing but the answer, case counts
    ("(B)", " (B)", 1.0), ("(B)", " B", 0.0),  # lm-eval's exact match on the target string
])
def test_bbh_strict_match(gold, output, expected):
    assert graded(bbh(gold), output) == expected


def test_bbh_cot_answer_keeps_signs_and_brackets():
    assert graded(bbh("-6"), "5 - 11 = -6. So the answer is -6.", "cot") == 1.0
    assert graded(bbh(") ]"), "We close them. So the answer is ) ].", "cot") == 1.0
    assert graded(bbh("-6"), "So the answer is 6.", "cot") == 0.0


@pytest.mark.parametrize("text,options,expected", [
    ("nothing to say", ["yes", "no"], "nothing to say"),  # "no" is not a word of it
    ("untrue", ["True", "False"], "untrue"),
    ("it is true", ["True", "False"], "True"),
    ("No.", ["yes", "no"], "no"),
    ("yes or no", ["yes", "no"], "yes or no"),  # two options: commits to neither
])
def test_choice_matching_on_whole_words(text, options, expected):
    assert extract_choice(text, options) == expected


def test_choice_item_scores_only_the_option_given():
    it = EvalItem("x", "g", ["no"], {"direct": ""}, "choice", ["yes", "no"])
    assert graded(it, "nothing to say") == 0.0 and graded(it, "no") == 1.0


def test_self_consistency_both_voting_rules():
    assert majority_vote(["", "", "7"]) == "7"  # samples without an answer do not vote
    assert majority_vote(["", "", "7"], invalid_votes=True) == ""  # lm-eval: they vote "[invalid]", which wins
    assert majority_vote(["7", "", "", "7", "8"], invalid_votes=True) in ("7", "")
    assert majority_vote(["7", "", "7", "8"], invalid_votes=True) == "7"


def test_native_language_answer_phrases():
    it = EvalItem("mgsm/de/0", "de", ["18"], {"cot": ""}, "number", answer_phrases=("Die Antwort ist", "Die Antwort lautet"))
    assert canonical(it, "16 - 3 - 4 = 9. 9 * 2 = 18. Die Antwort lautet 18.", "cot") == "18"
    assert canonical(it, "16 - 3 - 4 = 9. So the answer is 18.", "cot") == ""  # not this prompt's marker
    ja = EvalItem("mgsm/ja/0", "ja", ["18"], {"cot": ""}, "number", answer_phrases=("答えは",))
    assert score(ja, canonical(ja, "9×2=18。答えは18です。", "cot"))["score"] == 1.0


def test_gsm_numbers_with_commas():
    it = EvalItem("gsm8k/0", "g", ["1200"], {"cot": ""}, "number")
    assert graded(it, "It costs $1,200 in all. The answer is $1,200.", "cot") == 1.0
    assert graded(it, "The answer is 1,200.", "cot") == 1.0
    assert extract_cot_answer("The answer is 3.5.") == "3.5"


def test_cot_answer_is_the_last_marker_even_when_an_earlier_one_is_quoted():
    """SmolLM2 on mmlu/business_ethics/0: the lazy marker regex swallowed the final answer and scored D."""
    from flanlab.evaluate.scoring import extract_cot_answer, extract_choice
    text = 'Option D says it is "The answer is (D)." The answer is (C).'
    assert extract_cot_answer(text) == "(C)" and extract_choice(extract_cot_answer(text), None, letters=True) == "C"
    assert extract_cot_answer("So the answer is 3. Wait, no. So the answer is 5.") == "5"
    assert extract_cot_answer("Die Antwort ist 4. Die Antwort lautet 7.", ("Die Antwort ist", "Die Antwort lautet")) == "7"
    assert extract_cot_answer("no marker here") == ""


def test_answer_form_tells_format_from_skill():
    from flanlab.evaluate.scoring import answer_form_ok
    assert answer_form_ok("(B)", ["(A)"]) and not answer_form_ok("Monsters", ["(A)"])
    assert not answer_form_ok("", ["Yes"]) and not answer_form_ok("Yes\nB: No\nC: maybe", ["Yes"])
    assert answer_form_ok("No", ["Yes"]) and answer_form_ok("12", ["7"]) and not answer_form_ok("twelve", ["7"])
