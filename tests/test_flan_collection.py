"""The Flan 2022 collection path: rendered (prompt/completion) sources incl. the hub export layout, CoT data with
CoT templates, Flan submixture caps/rates and coverage (decontamination: test_decontaminate.py),
exemplar-only prompts, lengths in a tokenizer's tokens, and the errors of bad input."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flanlab.config import validate
from flanlab.datapaths import data_root
from flanlab.errors import FlanlabError
from flanlab.formats import Format, parse_format, render_example
from flanlab.mixture import CollectionSpec, MixConfig, build_mixture, read_mixture
from flanlab.mixture.flan2022 import FLAN_2022
from flanlab.tasks.model import Example, Template
from flanlab.tasks.registry import TaskRegistry, load_task_file

SHARED = data_root() or Path("no-real-data")  # FLANLAB_DATA, or ../shared/data when present


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def t0_rows(templates=("ag_news_classify", "ag_news_recommend", "imdb_Movie", "quoref_Find_Answer"), n=30):
    return [{"template": t, "flan_group": "T0-SF" if t.startswith("quoref") else "FLAN/T0-overlap",
             "prompt": f"{t} prompt number {i}: what is {i} plus one?", "completion": str(i + 1)}
            for t in templates for i in range(n)]


def task_file(tmp_path: Path, tasks: list[dict], name="tasks.yaml") -> Path:
    f = tmp_path / name
    f.write_text(yaml.safe_dump({"tasks": tasks}))
    return f


def t0_task_file(tmp_path: Path) -> Path:
    """A T0-SF task per template and Muffin tasks per dataset, both from one rendered parquet (as jobs/flan_tasks.yaml)."""
    write_parquet(tmp_path / "t0.parquet", t0_rows())
    return task_file(tmp_path, [
        {"dataset": "t0", "category": "t0sf", "collection": "t0sf",
         "source": {"type": "rendered", "path": "t0.parquet", "task_column": "template", "where": {"flan_group": "T0-SF"}}},
        {"dataset": "m", "category": "muffin", "collection": "muffin",
         "source": {"type": "rendered", "path": "t0.parquet", "task_column": "template",
                    "where": {"flan_group": "FLAN/T0-overlap"}, "task_prefixes": ["ag_news", "imdb"]}}])


# ---------------------------------------------------------------------------- rendered sources

def test_rendered_source_groups_filters_and_coarsens_to_datasets(tmp_path):
    f = t0_task_file(tmp_path)
    tasks = {t.name: t for t in load_task_file(f)}
    assert set(tasks) == {"t0sf:quoref_Find_Answer", "muffin:ag_news", "muffin:imdb"}
    news = tasks["muffin:ag_news"]  # two templates' rows in one dataset-level task, split by content
    assert sum(news.size(s) for s in ("train", "validation", "test")) == 60
    ids = {s: {news.get(s, i).fields["prompt"] for i in range(news.size(s))} for s in ("train", "validation", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["validation"]
    ex = news.get("train", 0)
    assert int(ex.answer) == int(ex.fields["prompt"].split("what is ")[1].split()[0]) + 1  # the row's own completion
    # the template is the rendered prompt itself: few-shot = rendered examples one after another
    shots = [news.get("train", 1), news.get("train", 2)]
    rec = render_example(news, ex, news.get_templates()[0], Format(2), exemplars=shots)
    assert rec["inputs"] == "\n\n".join([f"{s.fields['prompt']}\n{s.answer}" for s in shots] + [ex.fields["prompt"]])
    assert rec["targets"] == ex.answer


def test_rendered_source_reads_the_hub_export_layout_offline(tmp_path):
    """Open-Orca/FLAN's layout (<submix>_<format>_data/part.N.parquet; inputs, targets, _task_name) read through
    `datasets` from a local copy - the same code path as the hub name."""
    hub = tmp_path / "FLAN"
    for part in range(2):
        write_parquet(hub / "t0_zsopt_data" / f"part.{part}.parquet",
                      [{"inputs": f"Q{part}-{i}: say {i}", "targets": str(i), "_task_name": f"task_{i % 3}",
                        "_template_type": "zs_opt", "_task_source": "T0"} for i in range(12)])
    write_parquet(hub / "cot_zsopt_data" / "part.0.parquet",
                  [{"inputs": "other", "targets": "x", "_task_name": "cot_x", "_template_type": "zs_opt",
                    "_task_source": "CoT"}])
    f = task_file(tmp_path, [{"dataset": "flan_t0", "category": "t0sf", "collection": "t0sf",
                              "source": {"type": "rendered", "hf_path": "FLAN", "data_files": "t0_zsopt_data/*.parquet",
                                         "fields": {"prompt": "inputs", "answer": "targets"},
                                         "task_column": "_task_name"}}])
    tasks = {t.name: t for t in load_task_file(f)}
    assert set(tasks) == {"t0sf:task_0", "t0sf:task_1", "t0sf:task_2"}  # cot_zsopt_data not read
    assert sum(t.size(s) for t in tasks.values() for s in ("train", "validation", "test")) == 24


def test_rendered_parquet_without_the_mapped_columns_names_file_and_field(tmp_path):
    write_parquet(tmp_path / "bad.parquet", [{"template": "a", "prompt": "p"}])
    f = task_file(tmp_path, [{"dataset": "t0", "category": "t0sf",
                              "source": {"type": "rendered", "path": "bad.parquet", "task_column": "template"}}])
    with pytest.raises(FlanlabError) as e:
        load_task_file(f)
    assert "bad.parquet" in str(e.value) and "tasks[0].source.fields.answer" in str(e.value)
    assert "'completion'" in str(e.value) and "template" in str(e.value)  # what is missing, and what is there
    write_parquet(tmp_path / "ok.parquet", [{"template": "a", "prompt": "p", "completion": "c"}])
    f = task_file(tmp_path, [{"dataset": "t0", "category": "t0sf",
                              "source": {"type": "rendered", "path": "ok.parquet", "task_column": "tmpl"}}])
    with pytest.raises(FlanlabError, match=r"tasks\[0\].source.task_column.*'tmpl'"):
        load_task_file(f)


# ---------------------------------------------------------------------------- CoT data and templates

COT_TEMPLATES = [{"input": "{question}\nLet's think step by step.", "target": "{rationale} So the answer is {answer}."},
                 {"input": "Q: {question} Reason first.", "target": "{rationale} So the answer is {answer}."}]


def test_cot_tsv_reads_escaped_newlines_and_cot_templates_render_the_flan_target(tmp_path):
    (tmp_path / "c.tsv").write_text("Is it?\\nOptions:\\n- yes\\n- no\tyes\tIt is, as seen\n"
                                    "What is 2+2?\t4\t2+2 is 4.\n")
    f = task_file(tmp_path, [{"dataset": "c", "category": "cot", "collection": "cot",
                              "source": {"type": "cot_tsv", "path": "c.tsv"}, "templates": COT_TEMPLATES}])
    task = load_task_file(f)[0]
    exs = [task.get(s, i) for s in ("train", "validation", "test") for i in range(task.size(s))]
    first = next(e for e in exs if e.answer == "yes")
    assert first.fields["question"] == "Is it?\nOptions:\n- yes\n- no"
    tpl = task.get_templates()[0]
    assert tpl.is_cot and not Template("{question}").is_cot
    rec = render_example(task, first, tpl, Format(cot=True))
    assert rec["inputs"] == "Is it?\nOptions:\n- yes\n- no\nLet's think step by step."  # no second trigger
    assert rec["targets"] == "It is, as seen. So the answer is yes."  # a period closes the rationale
    m = build_mixture(MixConfig(output=str(tmp_path / "mix"), total_examples=50,
                                registry={"task_files": [str(f)]},
                                collections=[CollectionSpec(name="cot", tasks=["@cot"])]), progress=False).manifest
    assert all("_cot" in k for k in m["per_format"])  # a CoT template always makes a CoT example
    assert all(r["targets"].endswith(f"So the answer is {'yes' if 'Is it' in r['inputs'] else '4'}.")
               for r in read_mixture(tmp_path / "mix"))


def test_cot_tsv_row_with_wrong_field_count_names_the_line(tmp_path):
    (tmp_path / "c.tsv").write_text("q1\ta1\tr1\nq2\ta2\n")
    f = task_file(tmp_path, [{"dataset": "c", "category": "cot", "source": {"type": "cot_tsv", "path": "c.tsv"}}])
    with pytest.raises(FlanlabError, match=r"c.tsv: line 2 has 2 tab-separated columns, expected 3"):
        load_task_file(f)


# ---------------------------------------------------------------------------- submixtures

def test_flan_submixtures_take_the_paper_caps_and_rates_and_report_coverage(tmp_path):
    f = t0_task_file(tmp_path)
    c = MixConfig(output=str(tmp_path / "mix"), total_examples=720, registry={"task_files": [str(f)]},
                  collections=[CollectionSpec(name="muffin", tasks=["@muffin"], flan_submixture="muffin"),
                               CollectionSpec(name="t0sf", tasks=["@t0sf"], flan_submixture="t0sf"),
                               CollectionSpec(name="mine", tasks=["@synthetic"], weight=0.08)])
    assert (c.collections[0].cap, c.collections[0].weight) == (30_000, 0.40)
    assert (c.collections[1].cap, c.collections[1].weight) == (20_000, 0.32)
    m = build_mixture(c, progress=False).manifest
    # rates renormalised over what is present: 0.40 : 0.32 : 0.08 of 720
    assert m["per_collection"] == {"muffin": 360, "t0sf": 288, "mine": 72}
    cov = m["flan2022"]
    muffin = cov["submixtures"]["muffin"][0]
    assert (muffin["tasks_present"], muffin["paper_tasks"], muffin["rate_used"]) == (2, 80, 0.5)
    assert cov["submixtures"]["t0sf"][0]["tasks_present"] == 1 and cov["flan_tasks_present"] == 3
    assert cov["paper_tasks"] == 1836
    assert [x["submixture"] for x in cov["missing"]] == ["niv2", "cot", "dialog"]
    assert cov["submixtures"]["extra:mine"][0]["examples"] == 72


def test_the_five_submixtures_have_flan_v2s_rates_and_caps():
    # FLAN v2's flan2022_submix (flan/v2/run_example.py) and the paper's per-task caps
    got = {s.name: (s.rate, s.cap) for s in FLAN_2022.values()}
    assert got == {"muffin": (0.4, 30_000), "t0sf": (0.32, 20_000), "niv2": (0.2, 5_000), "cot": (0.05, 100_000),
                   "dialog": (0.03, 200_000)}
    for name, (rate, cap) in got.items():
        c = CollectionSpec(name=name, tasks=["@x"], flan_submixture=name)
        assert (c.weight, c.cap) == (rate, cap)


def test_unknown_submixture_is_named_with_a_suggestion(tmp_path):
    f = tmp_path / "mix.yaml"
    f.write_text("mix:\n  collections:\n    - {name: c, tasks: ['@synthetic'], flan_submixture: t0_sf}\n")
    from flanlab.config import read_section
    data, sec = read_section(f, "mix")
    with pytest.raises(FlanlabError) as e:
        validate(MixConfig, data, file=f, prefix=sec)
    msg = str(e.value)
    assert str(f) in msg and "mix.collections[0].flan_submixture" in msg and "did you mean 't0sf'" in msg


def test_failed_mix_leaves_the_existing_mixture_alone(tmp_path):
    out = tmp_path / "mix"
    first = build_mixture(MixConfig(output=str(out), total_examples=200), progress=False).manifest
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_parquet(tmp_path / "bad.parquet", [{"template": "a", "prompt": "p"}])
    f = task_file(tmp_path, [{"dataset": "t0", "category": "t0sf",
                              "source": {"type": "rendered", "path": "bad.parquet", "task_column": "template"}}])
    with pytest.raises(FlanlabError, match="bad.parquet"):
        build_mixture(MixConfig(output=str(out), total_examples=200, overwrite=True,
                                registry={"task_files": [str(f)]}), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and first["examples"] == 200
    assert not list(tmp_path.glob(".mix.partial-*"))


# ---------------------------------------------------------------------------- exemplar-only format

def test_exemplar_only_prompts_hold_bare_pairs_and_no_template_text():
    shots = [Example("a", {"word": "cat"}, "tac"), Example("b", {"word": "dog"}, "god")]
    query = Example("q", {"word": "owl"}, "lwo")
    tpl = Template("Reverse the letters of the word {word}.")
    rec = render_example(None, query, tpl, Format(2, exemplar_only=True), exemplars=shots)
    assert rec["inputs"] == "cat\ntac\n\ndog\ngod\n\nowl" and rec["targets"] == "lwo"
    assert rec["format"] == "fs2_noopt_direct_exo" and parse_format("fs2_noopt_direct_exo") == Format(2, exemplar_only=True)
    with pytest.raises(FlanlabError, match="exemplar-only prompts are few-shot"):
        parse_format("zs_noopt_direct_exo")


def test_exemplar_only_share_in_mixtures_and_in_evaluation(tmp_path):
    m = build_mixture(MixConfig(output=str(tmp_path / "m"), total_examples=2000,
                                formats={"few_shot_prob": 1.0, "exemplar_only_prob": 0.5, "inversion_prob": 0.0}),
                      progress=False).manifest
    exo = sum(v for k, v in m["per_format"].items() if k.endswith("_exo"))
    assert 0.44 < exo / m["examples"] < 0.56
    rows = [r for r in read_mixture(tmp_path / "m") if r["format"].endswith("_exo")]
    assert rows and not any("OPTIONS" in r["inputs"] or "step by step" in r["inputs"] for r in rows)
    from flanlab.evaluate.benchmarks import load_synthetic
    reg = TaskRegistry.default()
    bench = load_synthetic(reg, ["reverse_word:*"], shots=2, limit=2, exemplar_only=True)
    task = reg[bench.items[0].group]
    ex = task.get("test", 0)
    prompt = bench.items[0].prompts["direct"]
    assert prompt.endswith("\n\n" + "\n".join(ex.fields.values())) and prompt.count("\n\n") == 2
    assert "cot" not in bench.items[0].prompts


# ---------------------------------------------------------------------------- lengths in tokens

def word_tokenizer(path: Path) -> Path:
    """A word-level HF tokenizer (one token per word) saved in checkpoint layout, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, "</s>": 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>").save_pretrained(str(path))
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 2}))
    return path


def test_mixture_lengths_count_the_checkpoint_tokenizers_tokens(tmp_path):
    ckpt = word_tokenizer(tmp_path / "ckpt")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"longwordnumber{i:04d} " * 3, "answer": "x"}) + "\n"
                            for i in range(50)))
    f = task_file(tmp_path, [{"dataset": "d", "category": "qa", "collection": "mine",
                              "source": {"type": "jsonl", "path": str(data)}, "templates": [{"input": "{question}"}]}])

    def build(name, **kw):
        c = MixConfig(output=str(tmp_path / name), total_examples=100, max_input_len=16, registry={"task_files": [str(f)]},
                      formats={"few_shot_prob": 1.0, "max_few_shot": 3, "inversion_prob": 0.0},
                      collections=[CollectionSpec(name="mine", tasks=["@mine"])], **kw)
        return build_mixture(c, progress=False).manifest, list(read_mixture(tmp_path / name))
    by_bytes, rows_b = build("bytes")
    by_tokens, rows_t = build("tokens", tokenizer=str(ckpt))
    assert by_bytes["length_unit"] == "bytes" and by_tokens["length_unit"].startswith("tokens of")
    # a query is 3 words (~60 bytes): in bytes no exemplar fits 16, in words up to 3 exemplars do (4 x 4 tokens)
    assert all(r["format"].startswith("zs") for r in rows_b)
    assert all(r["format"].startswith("fs") for r in rows_t)
    assert all(len(r["inputs"].split()) <= 16 for r in rows_t)


def test_checkpoint_without_its_tokenizer_is_refused(tmp_path):
    from flanlab.models.tokenizer import load_tokenizer
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 49152}))
    with pytest.raises(FlanlabError) as e:
        load_tokenizer(ckpt)
    assert str(ckpt) in str(e.value) and "no tokenizer" in str(e.value) and "49152" in str(e.value)
    (ckpt / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 384}))
    assert load_tokenizer(ckpt).name == "byte"  # flanlab's own byte-level checkpoints need none


def test_a_collections_formats_override_the_mixtures_field_by_field(tmp_path):
    c = MixConfig(output=str(tmp_path / "m"), total_examples=600,
                  formats={"few_shot_prob": 1.0, "inversion_prob": 0.0, "cot_share": 0.0},
                  collections=[CollectionSpec(name="a", tasks=["reverse_word:*"], formats={"options_prob": 0.0}),
                               CollectionSpec(name="b", tasks=["add_numbers:*"], formats={"few_shot_prob": 0.0})])
    build_mixture(c, progress=False)
    rows = list(read_mixture(tmp_path / "m"))
    a = [r["format"] for r in rows if r["collection"] == "a"]
    b = [r["format"] for r in rows if r["collection"] == "b"]
    assert a and all(f.startswith("fs") for f in a)  # few_shot_prob still the mixture's
    assert b and all(f.startswith("zs") for f in b)


def test_rendered_and_bigbench_tasks_show_no_template_text_exemplar_only(tmp_path):
    # rendered rows carry their template in every field: they are never drawn exemplar-only
    f = t0_task_file(tmp_path)
    m = build_mixture(MixConfig(output=str(tmp_path / "m"), total_examples=600, registry={"task_files": [str(f)]},
                                collections=[CollectionSpec(name="t0", tasks=["@muffin", "@t0sf"]),
                                             CollectionSpec(name="mine", tasks=["reverse_word:*"])],
                                formats={"few_shot_prob": 1.0, "exemplar_only_prob": 1.0, "inversion_prob": 0.0}),
                      progress=False).manifest
    rows = list(read_mixture(tmp_path / "m"))
    assert not [r for r in rows if r["collection"] == "t0" and r["format"].endswith("_exo")]
    assert [r for r in rows if r["collection"] == "mine" and r["format"].endswith("_exo")]
    assert m["per_collection"]["t0"] > 0
    # BIG-bench: task_prefix is instruction text; exemplar-only shows the items' inputs only
    from flanlab.tasks.sources.bigbench import bigbench_task
    (tmp_path / "bb" / "riddles").mkdir(parents=True)
    (tmp_path / "bb" / "riddles" / "task.json").write_text(json.dumps({"task_prefix": "Answer the riddle.", "examples": [
        {"input": f"riddle {i}", "target": f"a{i}"} for i in range(3)]}))
    task = bigbench_task("riddles", tmp_path / "bb", held_out=False)
    exs = task.dataset.source.all_examples
    assert render_example(task, exs[2], task.get_templates()[0], Format(0))["inputs"].startswith("Answer the riddle.")
    rec = render_example(task, exs[2], task.get_templates()[0], Format(2, exemplar_only=True), exemplars=exs[:2])
    assert rec["inputs"] == "riddle 0\na0\n\nriddle 1\na1\n\nriddle 2"


def test_mixing_weights_must_be_positive(tmp_path):
    from test_cli import cli
    cfg = tmp_path / "mix.yaml"
    for w in (0, -0.2):
        cfg.write_text(yaml.safe_dump({"mix": {"output": str(tmp_path / "out"),
                                               "collections": [{"name": "a", "tasks": ["@synthetic"], "weight": w}]}}))
        code, text = cli("mix", cfg)
        assert code == 2 and "mix.collections[0].weight" in text and "greater than 0" in text
    assert not (tmp_path / "out").exists()
