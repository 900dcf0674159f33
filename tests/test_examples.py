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


def test_flan_configs_validate_and_the_collection_plans():
    from flanlab.experiments.run import RunConfig
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
    validate(TaskFile, read_yaml(EX / "flan" / "hub_tasks.yaml"), file="hub_tasks.yaml")  # valid, not loaded (online)
