"""The shipped example configs stay valid."""
from pathlib import Path

from flanlab.config import read_yaml, validate
from flanlab.evaluate.harness import EvalConfig
from flanlab.experiments.sweep import SweepConfig
from flanlab.mixture import MixConfig, plan_mixture
from flanlab.train.trainer import TrainConfig

EX = Path(__file__).resolve().parent.parent / "examples"


def test_example_configs_validate_and_plan():
    mix = validate(MixConfig, read_yaml(EX / "mix.yaml")["mix"], file=EX / "mix.yaml")
    reg = mix.registry.build(EX)
    assert reg["closed_book_qa:capitals"].size("train") + reg["closed_book_qa:capitals"].size("test") > 10
    plan = plan_mixture(mix, reg)
    per_coll = {}
    for p in plan["tasks"]:
        per_coll[p["collection"]] = per_coll.get(p["collection"], 0) + p["n"]
    assert per_coll["synthetic"] == 3 * per_coll["custom"]  # weights 3:1
    validate(TrainConfig, read_yaml(EX / "train.yaml")["train"], file=EX / "train.yaml")
    validate(EvalConfig, read_yaml(EX / "eval.yaml")["eval"], file=EX / "eval.yaml")
    sw = validate(SweepConfig, read_yaml(EX / "sweep.yaml"), file=EX / "sweep.yaml")
    assert sw.base.train.steps == 600 and sw.presets == ["t5-0.5m", "t5-1m"]


def test_flan_configs_validate_and_the_collection_plans(tmp_path, monkeypatch):
    from flanlab.datapaths import data_root
    from flanlab.experiments.run import RunConfig
    if data_root() is None:  # no real data here: the configs still validate against an empty data directory
        monkeypatch.setenv("FLANLAB_DATA", str(tmp_path))
    for name in ("smollm2_flan.yaml", "smollm2_flan_long.yaml", "smollm2_flan_nocot.yaml"):
        run = validate(RunConfig, read_yaml(EX / name), file=EX / name)
        assert run.train.model.checkpoint == "smollm2-135m"
    nocot = validate(RunConfig, read_yaml(EX / "smollm2_flan_nocot.yaml"), file="x")
    assert "cot" not in [c.name for c in nocot.mix.collections] and not nocot.baseline
    mix = validate(MixConfig, read_yaml(EX / "flan2022.yaml")["mix"], file=EX / "flan2022.yaml")
    if (EX.parent.parent / "shared" / "data" / "train").is_dir():  # the real collection pieces (as the configs name them)
        plan = plan_mixture(mix, mix.registry.build(EX))
        tasks = {}
        for p in plan["tasks"]:
            tasks.setdefault(p["collection"], set()).add(p["task"].name)
        assert {k: len(v) for k, v in tasks.items()} == {"muffin": 16, "t0sf": 148, "niv2": 1556, "cot": 7, "bigbench": 36,
                                                         "builtin": 60}
    from flanlab.tasks.registry import TaskFile
    hub = EX.parent / "src" / "flanlab" / "jobs" / "flan_hub_tasks.yaml"  # @flan2022 without local data
    assert [t.source.type for t in validate(TaskFile, read_yaml(hub), file=hub).tasks] == ["flan_collection"] * 5


def test_main_job_is_a_real_finetune_with_or_without_the_data(tmp_path, monkeypatch):
    from flanlab import cli, datapaths
    from flanlab.experiments.run import RunConfig
    toy = validate(RunConfig, read_yaml(EX / "toy.yaml"), file="toy.yaml")
    assert toy.train.model.preset == "t5-1m" and toy.model_dump(exclude={"output"}) == RunConfig().model_dump(
        exclude={"output"})  # the from-scratch toy, as `flanlab run` ran before
    if datapaths.data_root() is not None:
        job = cli.main_job()
        cfg = validate(RunConfig, read_yaml(job), file=job)
        assert job.name == "main.yaml" and cfg.train.model.checkpoint == "smollm2-135m" and cfg.train.model.lora
        assert {b.name for b in cfg.eval.benchmarks} == {"mmlu", "bbh", "synthetic"} and cfg.baseline
        plan = plan_mixture(cfg.mix, cfg.mix.registry.build(job.parent))
        assert {p["collection"] for p in plan["tasks"]} == {"muffin", "t0sf", "niv2", "cot"}
    # where there is no real data and no Flan collection in the Hugging Face cache: the packages-only job, said
    # plainly, never a traceback and never a multi-GB download
    monkeypatch.delenv("FLANLAB_DATA", raising=False)
    monkeypatch.setattr(datapaths, "candidates", lambda: [tmp_path / "nowhere"])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job = cli.main_job()
    cfg = validate(RunConfig, read_yaml(job), file=job)
    assert job.name == "main_packages.yaml" and cfg.train.model.checkpoint == "smollm2-135m"
    reg = cfg.mix.registry.build(job.parent)
    assert not [t for p in plan_mixture(cfg.mix, reg)["tasks"] if (t := p["task"]).benchmark_source or t.held_out]
    from test_cli import cli as run_cli
    code, text = run_cli("mix", EX / "flan2022.yaml", "-o", tmp_path / "m")
    text = " ".join(text.split())
    assert code == 2 and "DataProvenanceInitiative/flan2021_submix_original@main is not in the hub cache" in text
    assert "flanlab data fetch flan2022" in text and not (tmp_path / "m").exists()
