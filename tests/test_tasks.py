import json
import sys
from pathlib import Path

import pytest
import yaml

from flanlab.errors import FlanlabError
from flanlab.tasks.registry import TaskRegistry, load_task_file
from flanlab.tasks.synthetic import CATEGORIES, DEFAULT_HELD_OUT_CATEGORIES, build_synthetic_tasks

ROOT = Path(__file__).resolve().parent.parent


def test_suite_size_templates_and_rationales():
    tasks = build_synthetic_tasks()
    assert len(tasks) >= 50
    assert len({t.category.name for t in tasks}) >= 10
    for t in tasks:
        assert len(t.get_templates()) >= 3
        for i in range(5):
            ex = t.get("train", i)
            assert ex.rationale and ex.answer in ex.rationale, (t.name, ex)
            if ex.options:
                assert ex.answer in ex.options and len(set(ex.options)) == len(ex.options)
            for tpl in t.get_templates():
                inp, tgt = tpl.render(ex, t.name)
                assert tgt == ex.answer and "{" not in inp


def test_generators_are_correct():
    reg = TaskRegistry.default()
    ex = reg["add_numbers:hundreds"].get("test", 7)
    assert int(ex.answer) == int(ex.fields["a"]) + int(ex.fields["b"])
    ex = reg["sort_list:long_lists"].get("train", 3)
    assert ex.answer.split() == sorted(ex.fields["numbers"].split(), key=int)
    ex = reg["evaluate_boolean:bool_triples"].get("train", 11)
    assert str(eval(ex.fields["expression"])) == ex.answer
    ex = reg["key_lookup:large_tables"].get("train", 5)
    table = dict(kv.split(" = ") for kv in ex.fields["table"].split(", "))
    assert table[ex.fields["key"]] == ex.answer


def test_examples_are_deterministic_and_splits_share_no_item():
    from flanlab.tasks.model import content_key
    a, b = build_synthetic_tasks(), build_synthetic_tasks()
    for ta, tb in zip(a, b):
        assert ta.get("train", 17) == tb.get("train", 17)
        assert [ta.get("test", i) for i in range(ta.size("test"))] == list(tb.examples("test"))
    for t in a:  # every built-in task: no item (normalised fields + answer) in two splits
        keys = {s: {content_key(e) for e in t.examples(s)} for s in ("train", "validation", "test")}
        assert not keys["train"] & (keys["validation"] | keys["test"]), t.name
        assert not keys["validation"] & keys["test"], t.name
        assert t.size("test") >= 2 and len(keys["test"]) == t.size("test"), t.name  # distinct eval items


def test_bigbench_eval_reads_only_its_test_split():
    from flanlab.evaluate.benchmarks import load_bigbench
    from flanlab.tasks.model import content_key
    from flanlab.tasks.sources.bigbench import bigbench_task
    t = bigbench_task("navigate")
    train = {content_key(e) for e in t.examples("train")}
    test = [e for e in t.examples("test")]
    items = load_bigbench(["navigate"], shots=2).items
    assert len(items) == len(test) > 0 and not train & {content_key(e) for e in test}
    assert [it.golds for it in items] == [list(e.aliases or [e.answer]) for e in test]


def test_held_out_flags():
    reg = TaskRegistry.default()
    held = {t.category.name for t in reg.held_out()}
    assert held == set(DEFAULT_HELD_OUT_CATEGORIES)
    assert all(c in CATEGORIES for c in held)


def test_task_file_jsonl_and_cot_tsv(tmp_path):
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps({"q": f"What is {i}+{i}?", "a": str(2 * i), "why": f"{i}+{i}={2*i}"})
                                                  for i in range(40)))
    (tmp_path / "cot.tsv").write_text("Q one?\tyes\tbecause one\nQ two?\tno\tbecause two\n")
    (tmp_path / "tasks.yaml").write_text(
        "tasks:\n"
        "  - dataset: doubles\n    category: arithmetic_qa\n"
        "    source: {type: jsonl, path: qa.jsonl, fields: {question: q, answer: a, rationale: why}}\n"
        "    templates: [{input: 'Q: {question}'}, {input: '{question} A:'}, {input: 'Solve {question}'}]\n"
        "  - dataset: cot_demo\n    category: cot\n    source: {type: cot_tsv, path: cot.tsv}\n")
    tasks = load_task_file(tmp_path / "tasks.yaml")
    assert [t.name for t in tasks] == ["arithmetic_qa:doubles", "cot:cot_demo"]
    t = tasks[0]
    assert sum(t.size(s) for s in ("train", "validation", "test")) == 40
    ex = next(t.examples("train"))
    assert ex.rationale.startswith(ex.fields["question"].split()[2][:1])
    allcot = [e for s in ("train", "validation", "test") for e in tasks[1].examples(s)]
    assert sorted(e.answer for e in allcot) == ["no", "yes"]


def test_task_file_csv_parquet_and_hf(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"text": f"item {i}", "label": "a" if i % 2 else "b"} for i in range(30)]
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "t.yaml").write_text(
        "tasks:\n"
        "  - {dataset: c, category: cls, source: {type: csv, path: d.csv, fields: {question: text, answer: label}}}\n"
        "  - {dataset: p, category: cls, source: {type: parquet, splits: {train: d.parquet}, fields: {question: text, answer: label}}}\n"
        "  - {dataset: h, category: cls, source: {type: hf, hf_path: json, data_files: {train: d.jsonl}, hf_split_map: {train: train},"
        " fields: {question: text, answer: label}}}\n")
    c, p, h = load_task_file(tmp_path / "t.yaml")
    assert p.size("train") == 30 and h.size("train") == 30
    assert sum(c.size(s) for s in ("train", "validation", "test")) == 30
    assert [e.answer for e in p.examples("train")] == [e.answer for e in h.examples("train")]


@pytest.mark.parametrize("body,field", [
    ("tasks:\n  - {dataset: d, category: c}\n", "tasks[0].source"),
    ("tasks:\n  - {dataset: d, category: c, source: {type: xml, path: a}}\n", "tasks[0].source.type"),
    ("tasks:\n  - {dataset: d, category: c, source: {type: jsonl, path: data.jsonl, fields: {question: nope, answer: a}}}\n",
     "tasks[0].source.fields.question"),
    ("tasks:\n  - {dataset: d, category: c, source: {type: jsonl, path: data.jsonl, fields: {question: q, answer: a}},"
     " templates: [{input: 'Q: {missing}'}]}\n", "tasks[0].templates[0]"),
    ("tasks: [\n", None),
])
def test_malformed_task_file_names_file_and_field(tmp_path, body, field):
    (tmp_path / "data.jsonl").write_text('{"q": "x", "a": "y"}\n')
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(FlanlabError) as ei:
        load_task_file(f)
    assert ei.value.file == str(f)
    if field:
        assert ei.value.field == field
    else:
        assert "not valid YAML" in str(ei.value)


def test_bad_data_row_names_the_data_file(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"q": "x", "a": "y"}\n{"q": broken\n')
    (tmp_path / "t.yaml").write_text("tasks:\n  - {dataset: d, category: c, source: {type: jsonl, path: data.jsonl,"
                                     " fields: {question: q, answer: a}}}\n")
    with pytest.raises(FlanlabError, match=r"data.jsonl: line 2 is not valid JSON"):
        load_task_file(tmp_path / "t.yaml")


def test_bigbench_json_from_directory(tmp_path):
    d = tmp_path / "bb" / "toy_task"
    d.mkdir(parents=True)
    exs = [{"input": f"{i} plus 1?", "target_scores": {str(i + 1): 1, str(i): 0}} for i in range(20)]
    exs.append({"input": "name?", "target": ["bob", "robert"]})
    (d / "task.json").write_text(json.dumps({"name": "toy_task", "task_prefix": "Add.", "examples": exs}))
    reg = TaskRegistry.default(bigbench_tasks=["toy_*"], bigbench_root=str(tmp_path / "bb"))
    t = reg["bigbench:toy_task"]
    src = t.dataset.source
    assert len(src.all_examples) == 21
    assert src.all_examples[3].answer == "4" and src.all_examples[3].options == ("4", "3")
    assert src.all_examples[-1].aliases == ("bob", "robert")
    inp, _ = t.get_templates()[0].render(src.all_examples[0])
    assert inp == "Add.\nQ: 0 plus 1?\nA: "


def test_bigbench_installed_package_and_bbh_flag():
    pytest.importorskip("bigbench")
    from flanlab.tasks.sources import list_bigbench_tasks
    names = list_bigbench_tasks()
    assert len(names) >= 150 and "arithmetic/1_digit_addition" in names
    reg = TaskRegistry.default(bigbench_tasks=["navigate", "arithmetic/1_digit_addition"])
    assert reg["bigbench:navigate"].benchmark_source and not reg["bigbench:arithmetic/1_digit_addition"].benchmark_source


@pytest.fixture
def without_bigbench_package(monkeypatch):
    """As on a fresh install: PyPI no longer serves bigbench 1.0.0, so `import bigbench` fails."""
    from flanlab.tasks.sources.bigbench import list_bigbench_tasks
    monkeypatch.setitem(sys.modules, "bigbench", None)  # makes the import raise ModuleNotFoundError
    list_bigbench_tasks.cache_clear()
    yield
    list_bigbench_tasks.cache_clear()


def test_bigbench_shipped_subset_without_the_package(without_bigbench_package):
    from flanlab.tasks.sources.bigbench import SHIPPED_ROOT, list_bigbench_tasks
    names = list_bigbench_tasks()
    leaves = [f for f in SHIPPED_ROOT.rglob("task.json") if not any(f.parent.glob("*/task.json"))]
    assert sorted(names) == sorted(f.parent.relative_to(SHIPPED_ROOT).as_posix() for f in leaves)
    for cfg in ("examples/flan2022.yaml", "src/flanlab/jobs/main_packages.yaml"):  # every task the configs name
        want = yaml.safe_load((ROOT / cfg).read_text())["mix"]["registry"]["bigbench_tasks"]
        reg = TaskRegistry.default(bigbench_tasks=want)
        assert {t.name.split("/")[0] for t in reg if t.name.startswith("bigbench:")} == {f"bigbench:{w}" for w in want}
    reg = TaskRegistry.default(bigbench_tasks=["navigate", "arithmetic/1_digit_addition"])
    assert reg["bigbench:navigate"].benchmark_source and not reg["bigbench:arithmetic/1_digit_addition"].benchmark_source
    with pytest.raises(FlanlabError, match=r"no BIG-bench task matches 'hindu_knowledge' \(without the bigbench "
                                           r"package flanlab has only the \d+ tasks it ships"):
        TaskRegistry.default(bigbench_tasks=["hindu_knowledge"])


def test_bigbench_package_without_tasks_falls_back_to_the_shipped_subset(tmp_path, monkeypatch):
    """`pip install bigbench` now gets 0.0.1, a package with no benchmark_tasks: the shipped tasks are read."""
    from flanlab.tasks.sources.bigbench import SHIPPED_ROOT, _root, list_bigbench_tasks
    (tmp_path / "bigbench").mkdir()
    (tmp_path / "bigbench" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bigbench", raising=False)
    list_bigbench_tasks.cache_clear()
    try:
        assert _root(None) == SHIPPED_ROOT and "navigate" in list_bigbench_tasks()
    finally:  # the stand-in package must not outlive the test (monkeypatch restores a real one, if any)
        sys.modules.pop("bigbench", None)
        list_bigbench_tasks.cache_clear()


def test_bigbench_shipped_files_match_their_manifest():
    import hashlib
    from flanlab.tasks.sources.bigbench import SHIPPED_ROOT
    rows = [r.split("\t") for r in (SHIPPED_ROOT / "MANIFEST.tsv").read_text().splitlines()[1:]]
    assert sorted(r[0] for r in rows) == sorted(f.relative_to(SHIPPED_ROOT).as_posix()
                                                for f in SHIPPED_ROOT.rglob("task.json"))
    for path, size, sha in rows:
        data = (SHIPPED_ROOT / path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), sha), path
    try:  # where the package is installed, the shipped copies are its files byte for byte
        import importlib.resources
        pkg = importlib.resources.files("bigbench") / "benchmark_tasks"
    except ModuleNotFoundError:
        return
    if not pkg.is_dir():  # PyPI's 0.0.1 has no tasks
        return
    for path, _, _ in rows:
        assert (pkg / path).read_bytes() == (SHIPPED_ROOT / path).read_bytes(), path
