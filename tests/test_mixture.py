import json
from collections import Counter

import pytest

from flanlab.errors import FlanlabError
from flanlab.mixture import CollectionSpec, FormatMix, MixConfig, build_mixture, plan_mixture, read_mixture
from flanlab.tasks.model import Example
from flanlab.tasks.registry import TaskRegistry


def cfg(tmp_path, name="m", **kw):
    kw.setdefault("total_examples", 3000)
    return MixConfig(output=str(tmp_path / name), shard_size=1000, **kw)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_mixture(cfg(tmp_path, "a", seed=1), progress=False).manifest
    b = build_mixture(cfg(tmp_path, "b", seed=1), progress=False).manifest
    c = build_mixture(cfg(tmp_path, "c", seed=2), progress=False).manifest
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert [s["sha256"] for s in a["shards"]] != [s["sha256"] for s in c["shards"]]
    assert len(a["shards"]) == 3
    rows = list(read_mixture(tmp_path / "a"))
    assert len(rows) == a["examples"] and Counter(r["task"] for r in rows) == Counter(a["per_task"])


def test_examples_proportional_with_cap():
    reg = TaskRegistry.default()
    c = MixConfig(total_examples=10000, collections=[CollectionSpec(name="s", tasks=["@synthetic"], cap=1000)])
    plan = {p["task"].name: p["n"] for p in plan_mixture(c, reg)["tasks"]}
    assert sum(plan.values()) == 10000
    # tools has 400 train examples (under the cap), animals 3000 (capped to 1000): rates 400:1000
    assert plan["reverse_word:animals"] / plan["reverse_word:tools"] == pytest.approx(1000 / 400, rel=0.02)
    # two capped tasks get the same share
    assert abs(plan["reverse_word:animals"] - plan["add_numbers:hundreds"]) <= 1
    # uncapped: proportional to size
    c2 = MixConfig(total_examples=10000, collections=[CollectionSpec(name="s", tasks=["@synthetic"], cap=10**6)])
    plan2 = {p["task"].name: p["n"] for p in plan_mixture(c2, reg)["tasks"]}
    assert plan2["reverse_word:animals"] / plan2["reverse_word:tools"] == pytest.approx(3000 / 400, rel=0.02)


def test_collection_weights_and_format_rates(tmp_path):
    c = cfg(tmp_path, total_examples=4000, formats=FormatMix(cot_share=0.5, few_shot_prob=0.0, inversion_prob=0.0, options_prob=0.0),
            collections=[CollectionSpec(name="words", tasks=["reverse_word:*", "uppercase:*"], weight=3),
                         CollectionSpec(name="numbers", tasks=["add_numbers:*"], weight=1)])
    m = build_mixture(c, progress=False).manifest
    assert m["per_collection"]["words"] / m["per_collection"]["numbers"] == pytest.approx(3.0, rel=0.05)
    cot = sum(v for k, v in m["per_format"].items() if k.endswith("_cot"))
    assert 0.45 < cot / m["examples"] < 0.55  # binomial sd at n=4000 is 0.008
    assert set(m["per_format"]) == {"zs_noopt_cot", "zs_noopt_direct"}
    for r in read_mixture(tmp_path / "m"):
        if r["format"].endswith("_cot"):
            assert " So the answer is " in r["targets"]


def test_held_out_never_in_training(tmp_path):
    m = build_mixture(cfg(tmp_path), progress=False).manifest
    held = set(m["held_out_tasks"])
    assert held and not held & set(m["per_task"])
    assert {e["task"] for e in m["excluded"]} == held
    with pytest.raises(FlanlabError, match="held-out task") as ei:
        build_mixture(cfg(tmp_path, "x", collections=[CollectionSpec(name="s", tasks=["list_min:short_lists"])]), file="mix.yaml",
                      progress=False)
    assert ei.value.file == "mix.yaml" and ei.value.field == "collections[0].tasks"


def test_benchmark_sources_refused(tmp_path):
    d = tmp_path / "bb" / "navigate"
    d.mkdir(parents=True)
    (d / "task.json").write_text(json.dumps({"examples": [{"input": f"q{i}", "target": "a"} for i in range(10)]}))
    c = cfg(tmp_path, "y", collections=[CollectionSpec(name="b", tasks=["bigbench:navigate"])])
    c.registry.bigbench_tasks = ["navigate"]
    c.registry.bigbench_root = str(tmp_path / "bb")
    with pytest.raises(FlanlabError, match="benchmark source"):
        build_mixture(c, progress=False)


def test_decontamination_drops_examples_matching_held_out_eval_data(tmp_path):
    from flanlab.tasks.model import Dataset, ListSource, Task, TaskCategory, Template
    cat = TaskCategory("qa", (Template("{q}"), Template("Q: {q}"), Template("{q}?")))
    train = [Example(id=f"a/{i}", fields={"q": f"question {i}"}, answer=str(i)) for i in range(100)]
    leaked = [Example(id=f"b/{i}", fields={"q": f"Question  {i}"}, answer=str(i)) for i in range(0, 100, 10)]  # 10 copies
    reg = TaskRegistry([Task(Dataset("a", ListSource({"train": train})), cat),
                        Task(Dataset("b", ListSource({"test": leaked})), cat, held_out=True)])
    c = cfg(tmp_path, total_examples=100, collections=[CollectionSpec(name="s", tasks=["qa:a"])])
    m = build_mixture(c, reg, progress=False).manifest
    assert m["dropped_contaminated"] == 10 and m["examples"] == 90
    assert not {r["inputs"] for r in read_mixture(tmp_path / "m")} & {f"question {i}" for i in range(0, 100, 10)}
    c2 = cfg(tmp_path, "n", total_examples=100, decontaminate=False, collections=[CollectionSpec(name="s", tasks=["qa:a"])])
    assert build_mixture(c2, reg, progress=False).manifest["examples"] == 100


def test_existing_output_is_not_lost(tmp_path):
    m1 = build_mixture(cfg(tmp_path, seed=1), progress=False).manifest
    before = (tmp_path / "m" / "shard-00000.jsonl").read_bytes()
    assert build_mixture(cfg(tmp_path, seed=1), progress=False).manifest["fingerprint"] == m1["fingerprint"]  # cached
    with pytest.raises(FlanlabError, match="built from a different config"):
        build_mixture(cfg(tmp_path, seed=2), progress=False)
    with pytest.raises(FlanlabError):  # a failing overwrite leaves the old mixture intact
        build_mixture(cfg(tmp_path, seed=2, overwrite=True, collections=[CollectionSpec(name="s", tasks=["nope*"])]), progress=False)
    assert (tmp_path / "m" / "shard-00000.jsonl").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]


def test_parquet_shards(tmp_path):
    m = build_mixture(cfg(tmp_path, shard_format="parquet", total_examples=500), progress=False).manifest
    rows = list(read_mixture(tmp_path / "m"))
    assert len(rows) == m["examples"] and m["shards"][0]["file"].endswith(".parquet")


def test_cli_mix_and_bad_config(tmp_path):
    from typer.testing import CliRunner
    from flanlab.cli import app
    good = tmp_path / "mix.yaml"
    good.write_text(f"mix:\n  total_examples: 300\n  output: {tmp_path / 'out'}\n")
    res = CliRunner().invoke(app, ["mix", str(good), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "manifest.json").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("total_examples: -5\n")
    res = CliRunner().invoke(app, ["mix", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml" in res.output and "total_examples" in res.output
