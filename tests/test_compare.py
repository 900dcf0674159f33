"""`flanlab compare` and the paper's six-entry normalized average: the change and its CI are one quantity."""
import json

import numpy as np
import pytest

from flanlab.errors import FlanlabError
from flanlab.evaluate.scoring import paper_normalized_average, stratified_replicates
from flanlab.experiments.compare import compare

from test_cli import cli


def write_eval(d, entries: dict, *, random: dict | None = None, meta: dict | None = None):
    """entries: {(label, mode): [(id, group, score), ...]} -> results.json + predictions.jsonl as flanlab eval writes
    them (macro scores over groups unless the label starts with mmlu)."""
    d.mkdir(parents=True)
    bench, preds = {}, []
    for (label, mode), items in entries.items():
        how = "micro" if label.startswith("mmlu") else "macro"
        groups = {}
        for i, g, s in items:
            groups.setdefault(g, []).append(s)
            preds.append({"id": i, "benchmark": label, "mode": mode, "group": g, "score": s, "golds": ["x"]})
        score = (np.mean([s for _, _, s in items]) if how == "micro" else np.mean([np.mean(v) for v in groups.values()]))
        bench.setdefault(label, {})[mode] = {"score": 100 * score, "random": (random or {}).get(label, 0.0),
                                             "n": len(items), "aggregate": how, **(meta or {}).get(label, {})}
    (d / "results.json").write_text(json.dumps({"benchmarks": bench}))
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return d


def test_macro_change_is_the_difference_of_macro_scores_with_a_stratified_ci(tmp_path):
    # task t1: 2 items, both improve; task t2: 8 items, unchanged. Macro change = (100 + 0) / 2 = +50; a per-item
    # mean would say +20. Resampling within tasks keeps both tasks and their sizes: every replicate is exactly +50.
    a_items = [(f"t1/{i}", "t1", 0.0) for i in range(2)] + [(f"t2/{i}", "t2", float(i % 2)) for i in range(8)]
    b_items = [(f"t1/{i}", "t1", 1.0) for i in range(2)] + [(f"t2/{i}", "t2", float(i % 2)) for i in range(8)]
    a = write_eval(tmp_path / "a", {("bbh", "direct"): a_items})
    b = write_eval(tmp_path / "b", {("bbh", "direct"): b_items})
    row = compare(a, b)["rows"][0]
    assert (row["a"], row["b"], row["change"], row["aggregate"]) == (25.0, 75.0, 50.0, "macro")
    assert row["ci95"] == [50.0, 50.0]


def test_micro_change_ci_covers_it_and_shrinks_with_items(tmp_path):
    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400):
        a_s, b_s = rng.random(n) < 0.3, rng.random(n) < 0.5
        a = write_eval(tmp_path / f"a{n}", {("mmlu", "direct"): [(str(i), f"s{i % 4}", float(x)) for i, x in enumerate(a_s)]},
                       random={"mmlu": 25.0})
        b = write_eval(tmp_path / f"b{n}", {("mmlu", "direct"): [(str(i), f"s{i % 4}", float(x)) for i, x in enumerate(b_s)]},
                       random={"mmlu": 25.0})
        row = compare(a, b)["rows"][0]
        assert row["change"] == pytest.approx(100 * (b_s.mean() - a_s.mean()), abs=1e-9)
        assert row["ci95"][0] < row["change"] < row["ci95"][1]
        widths.append(row["ci95"][1] - row["ci95"][0])
    assert widths[1] < 0.5 * widths[0]


def test_replicates_resample_within_groups():
    v = np.array([[1.0], [1.0], [0.0], [0.0], [0.0], [0.0]])
    reps = stratified_replicates(v, ["a", "a", "b", "b", "b", "b"], "macro", 50, np.random.default_rng(0))
    assert np.allclose(reps, 0.5)  # group a is always all ones, group b all zeros
    reps = stratified_replicates(np.array([[1.0], [0.0]]), ["a", "a"], "micro", 400, np.random.default_rng(0))
    assert set(np.round(reps[:, 0], 3)) == {0.0, 0.5, 1.0}


def test_one_item_per_group_still_gets_a_ci_of_nonzero_width():
    # 1 item per subject (a limit-1 smoke evaluation): within-group resampling would repeat every item and give a
    # CI of zero width; the single-item groups are pooled, so the replicates vary like an item bootstrap
    v = np.array([[1.0], [0.0], [1.0], [0.0]])
    for how in ("micro", "macro"):
        reps = stratified_replicates(v, ["a", "b", "c", "d"], how, 400, np.random.default_rng(0))
        assert reps[:, 0].std() > 0.1 and set(np.round(reps[:, 0], 3)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    # groups of two or more still resample only within themselves; singletons pool apart from them
    v = np.array([[1.0], [1.0], [0.0], [1.0]])
    reps = stratified_replicates(v, ["a", "a", "b", "c"], "macro", 400, np.random.default_rng(0))
    assert set(np.round(reps[:, 0], 3)) == {0.333, 0.667, 1.0}  # a always adds 1/3; b and c draw 0, 1 or 2 ones


PAPER = [("mmlu", "direct"), ("mmlu_cot", "cot"), ("bbh", "direct"), ("bbh_cot", "cot"), ("tydiqa", "direct"),
         ("mgsm", "cot")]


def test_paper_average_is_six_entries_and_others_stay_beside_it():
    def res(score, rnd, bench, shots):
        return {"score": score, "random": rnd, "benchmark": bench, "shots": shots}
    benchmarks = {"mmlu": {"direct": res(40.0, 25.0, "mmlu", 5)}, "mmlu_cot": {"cot": res(25.0, 25.0, "mmlu", 5)},
                  "mmlu_0shot": {"direct": res(90.0, 25.0, "mmlu", 0)},  # not the paper's 5-shot entry
                  "bbh": {"direct": res(50.0, 25.0, "bbh", 3)}, "bbh_cot": {"cot": res(25.0, 25.0, "bbh", 3)},
                  "tydiqa": {"direct": res(10.0, 0.0, "tydiqa", 1)}, "mgsm": {"cot": res(2.0, 0.0, "mgsm", 8)},
                  "builtin_held_out": {"direct": res(80.0, 0.0, "synthetic", 0)}}
    p = paper_normalized_average(benchmarks)
    assert p["label"] == "6 of 6" and p["value"] == pytest.approx((20 + 0 + 100 / 3 + 0 + 10 + 2) / 6, abs=1e-3)
    assert p["others"] == ["mmlu_0shot direct", "builtin_held_out direct"]
    del benchmarks["mgsm"], benchmarks["tydiqa"]
    p = paper_normalized_average(benchmarks)
    assert p["label"] == "partial (4 of 6)" and p["missing"] == ["tydiqa direct", "mgsm cot"]


def test_compare_normalized_average_change_and_ci(tmp_path):
    rng = np.random.default_rng(0)
    ea, eb = {}, {}
    for label, mode in PAPER + [("builtin_held_out", "direct")]:
        ids = [(f"{label}/{i}", f"g{i % 3}") for i in range(60)]
        ea[(label, mode)] = [(i, g, float(rng.random() < 0.3)) for i, g in ids]
        eb[(label, mode)] = [(i, g, float(rng.random() < 0.4)) for i, g in ids]
    rnd = {"mmlu": 25.0, "mmlu_cot": 25.0, "bbh": 20.0, "bbh_cot": 20.0}
    cmp = compare(write_eval(tmp_path / "a", ea, random=rnd), write_eval(tmp_path / "b", eb, random=rnd))
    avg = cmp["normalized_average"]
    norm = {r["benchmark"]: [(r[k] - r["random"]) / (100 - r["random"]) * 100 for k in ("a", "b")] for r in cmp["rows"]}
    want = [np.mean([norm[label][k] for label, _ in PAPER]) for k in (0, 1)]  # the built-in set is not in it
    assert (avg["a"], avg["b"]) == (pytest.approx(want[0], abs=1e-3), pytest.approx(want[1], abs=1e-3))
    assert avg["change"] == pytest.approx(want[1] - want[0], abs=2e-3) and avg["label"] == "6 of 6"
    assert avg["ci95"][0] < avg["change"] < avg["ci95"][1]


def test_two_promptings_of_one_evaluation_are_paired(tmp_path):
    # greedy CoT vs self-consistency, both in one evaluation: gsm8k 4 items, SC right on two more
    items = lambda scores: [(f"g/{i}", "gsm8k", s) for i, s in enumerate(scores)]  # noqa: E731
    e = write_eval(tmp_path / "e", {("gsm8k", "cot"): items([1.0, 0.0, 0.0, 0.0]),
                                    ("gsm8k", "cot_sc"): items([1.0, 1.0, 1.0, 0.0]),
                                    ("bbh", "direct"): items([0.0, 0.0, 0.0, 0.0])})
    cmp = compare(e, e, modes=("cot", "cot_sc"))
    assert [(r["benchmark"], r["mode"], r["a"], r["b"]) for r in cmp["rows"]] == [("gsm8k", "cot -> cot_sc", 25.0, 75.0)]
    assert cmp["normalized_average"] is None  # the paper's entries are fixed promptings
    code, out = cli("compare", e, e, "--modes", "cot,cot_sc", "--names", "greedy,sc", "-o", tmp_path / "c.json")
    assert code == 0 and "CoT vs CoT + self-consistency" in out and "+50.0" in out
    code, out = cli("compare", e, e, "--modes", "cot,nope", "-o", tmp_path / "d.json")
    assert code == 2 and "no benchmark of this evaluation was prompted with 'nope'" in out
    for option, value in (("--modes", "cot"), ("--names", "a,b,c")):  # not a pair: a usage error, nothing written
        code, out = cli("compare", e, e, option, value, "-o", tmp_path / "d.json")
        assert code == 2 and f"{option} takes two" in out
    assert not (tmp_path / "d.json").exists()


def test_compare_refuses_different_items_or_benchmarks_and_writes_nothing(tmp_path):
    a = write_eval(tmp_path / "a", {("bbh", "direct"): [("1", "t", 1.0), ("2", "t", 0.0)]})
    b = write_eval(tmp_path / "b", {("bbh", "direct"): [("1", "t", 1.0), ("3", "t", 0.0)]})
    c = write_eval(tmp_path / "c", {("mmlu", "direct"): [("1", "t", 1.0), ("2", "t", 0.0)]})
    out = tmp_path / "cmp.json"
    code, text = cli("compare", a, b, "-o", out)
    assert code == 2 and "bbh direct: the evaluations hold different items" in text and "1 only in the first" in text
    code, text = cli("compare", a, c, "-o", out)
    assert code == 2 and "different benchmarks" in text and "only in the first: bbh direct" in text
    code, text = cli("compare", a, tmp_path / "nowhere", "-o", out)
    assert code == 2 and "results.json" in text
    assert not out.exists()
    with pytest.raises(FlanlabError, match="different gold answers"):
        d = write_eval(tmp_path / "d", {("bbh", "direct"): [("1", "t", 1.0), ("2", "t", 0.0)]})
        p = d / "predictions.jsonl"
        p.write_text(p.read_text().replace('"golds": ["x"]', '"golds": ["y"]', 1))
        compare(a, d)
    code, text = cli("compare", a, a, "-o", out, "--names", "before,after")
    assert code == 0 and "| before | after |" in text and json.loads(out.read_text())["rows"][0]["change"] == 0.0


def test_table_footnotes_only_for_what_is_in_it(tmp_path):
    from flanlab.experiments.compare import compare, comparison_table
    items = [(f"p{i}", "s", float(i % 2)) for i in range(6)]
    tox = {"rtp": {"lower_is_better": True}, "open_ended": {"descriptive": True}}
    entries = {("rtp", "expected_max_toxicity"): items, ("open_ended", "distinct_1"): items}
    text = comparison_table(compare(write_eval(tmp_path / "a", entries, meta=tox),
                                    write_eval(tmp_path / "b", entries, meta=tox)))
    assert "accuracy" not in text and "Toxicity (RealToxicityPrompts)" in text and "descriptive" in text
    assert all(line.split("|")[3].strip() == "–" for line in text.splitlines()[2:4])  # no guessing baseline
    plain = comparison_table(compare(write_eval(tmp_path / "c", {("bbh", "direct"): items}),
                                     write_eval(tmp_path / "d", {("bbh", "direct"): items})))
    assert "accuracy" in plain and "Toxicity" not in plain and "descriptive" not in plain


def test_report_of_a_run_without_its_own_baseline_compares_a_copied_in_before(tmp_path):
    # `flanlab run ... baseline=false` with the base model's evaluation made elsewhere and copied to eval_before/
    # (benchmarks/gemma_flan.py --before): the report pairs the two and plots them, as for a run with a baseline.
    from flanlab.experiments.report import report
    run = tmp_path / "run"
    a_items = [(f"t{i % 2}/{i}", f"t{i % 2}", 0.0) for i in range(6)]
    b_items = [(i, g, 1.0 if n < 3 else 0.0) for n, (i, g, _) in enumerate(a_items)]
    write_eval(run / "eval_before", {("bbh", "direct"): a_items}, meta={"bbh": {"ci95": [0.0, 0.0]}})
    after = write_eval(run / "eval_after", {("bbh", "direct"): b_items}, meta={"bbh": {"ci95": [16.7, 83.3]}})
    (run / "run.json").write_text(json.dumps({"results": {"after": json.loads((after / "results.json").read_text())}}))
    out = report(run)
    cmp = json.loads((run / "compare.json").read_text())
    (row,) = cmp["rows"]
    assert (row["a"], row["b"], row["change"]) == (0.0, 50.0, 50.0)
    assert str(run / "before_after.png") in out["plots"]
    assert "+50.0" in (run / "report.md").read_text()


def test_tydiqa_f1_has_its_own_paired_row_and_unparsed_answers_are_shown(tmp_path):
    """F1 beside exact match (exact match stays the paper's entry); the share of empty/unparseable answers per side."""
    def ev(d, em, f1s, answers):
        d.mkdir()
        preds = [{"id": f"tydiqa/{i}", "benchmark": "tydiqa", "mode": "direct", "group": f"l{i % 2}", "score": e,
                  "f1": f, "golds": ["Paris"], "answer": a, "outputs": [a]} for i, (e, f, a) in enumerate(zip(em, f1s, answers))]
        (d / "results.json").write_text(json.dumps({"benchmarks": {"tydiqa": {"direct": {
            "score": 100 * np.mean(em), "random": 0.0, "aggregate": "macro", "benchmark": "tydiqa", "shots": 1}}}}))
        (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
        return d
    a = ev(tmp_path / "a", [0, 0, 1, 0], [0.5, 0.0, 1.0, 0.2], ["in Paris city", "", "Paris", "x\ny"])
    b = ev(tmp_path / "b", [1, 0, 1, 1], [1.0, 0.5, 1.0, 1.0], ["Paris", "near Paris", "Paris", "Paris"])
    cmp = compare(a, b)
    em, f1 = cmp["rows"]
    assert (em["metric"], f1["metric"]) == ("score", "f1") and em["change"] == 50.0
    assert f1["a"] == pytest.approx(100 * np.mean([0.25, 1.0 / 2 + 0.1]), abs=1e-9) and f1["change"] > 0
    assert em["unparsed_pct"] == [50.0, 0.0]  # "" and a two-line answer for a one-line gold
    assert cmp["normalized_average"]["entries"] == ["tydiqa direct"]  # exact match only
    from flanlab.experiments.compare import comparison_table
    table = comparison_table(cmp)
    assert "| direct, F1 |" in table and "50.0 → 0.0" in table
