import json


from flanlab.evaluate.harness import BenchmarkSpec, DecodingSpec, EvalConfig
from flanlab.experiments.report import paired_diff, report
from flanlab.experiments.run import RunConfig, run
from flanlab.experiments.sweep import SweepConfig, sweep, task_subsets
from flanlab.mixture import MixConfig
from flanlab.train.trainer import TrainConfig


def tiny_run(tmp_path, name="r"):
    return RunConfig(output=str(tmp_path / name), mix=MixConfig(total_examples=300, max_input_len=200),
                     train=TrainConfig(steps=4, batch_size=4, save_every=2, max_input_len=200, max_target_len=96, tensorboard=False),
                     eval=EvalConfig(benchmarks=[
                         BenchmarkSpec(name="synthetic", label="held_in", subsets=["parity:*"], modes=["direct", "cot", "cot_sc"], limit=2),
                         BenchmarkSpec(name="synthetic", label="held_out", subsets=["held_out"], modes=["direct"], limit=1)],
                         decoding=DecodingSpec(cot_max_new_tokens=8, direct_max_new_tokens=6, sc_samples=2)))


def test_run_end_to_end_and_stage_cache(tmp_path):
    rep = run(tiny_run(tmp_path), progress=False, log=lambda m: None)
    out = tmp_path / "r"
    for f in ("mixture/manifest.json", "train/final/model.safetensors", "eval_before/results.json", "eval_after/results.json",
              "run.json", "summary.md", "compare.json"):
        assert (out / f).exists(), f
    table = (out / "summary.md").read_text()
    assert "| before | after | change | paired 95% CI |" in table and "CoT + self-consistency" in table
    assert table.startswith("**t5-1m**, 4 steps (final loss ") and "wall time" in table and "TyDiQA" not in table
    cmp = json.loads((out / "compare.json").read_text())
    for r in cmp["rows"]:  # the change is the difference of the two printed scores
        stage = {s: rep["results"][s]["benchmarks"][r["benchmark"]][r["mode"]]["score"] for s in ("before", "after")}
        assert (r["a"], r["b"]) == (stage["before"], stage["after"])
        assert r["change"] == round(r["b"] - r["a"], 3) and r["ci95"][0] <= r["change"] <= r["ci95"][1]
    stored = json.loads((out / "run.json").read_text())
    stale = json.loads(json.dumps(stored))
    stale["comparison"]["rows"][0]["ci95"] = [-99.0, 99.0]  # as an older compare would have stored it
    (out / "run.json").write_text(json.dumps(stale))
    report(out)  # recomputes the comparison from the evaluations
    assert "[-99.0, +99.0]" not in (out / "report.md").read_text()
    assert json.loads((out / "compare.json").read_text())["rows"] == stored["comparison"]["rows"]
    (out / "run.json").write_text(json.dumps(stored))
    assert (out / "before_after.png").stat().st_size > 1000 and (out / "loss.png").stat().st_size > 1000
    assert (out / "report.html").read_text().count("data:image/png;base64") == 2
    assert rep["results"]["before"]["fingerprint"] != rep["results"]["after"]["fingerprint"]
    assert rep["results"]["after"]["benchmarks"]["held_in"]["cot_sc"]["n"] == 6
    mtime = (out / "train" / "final" / "model.safetensors").stat().st_mtime_ns
    rep2 = run(tiny_run(tmp_path), progress=False, log=lambda m: None)  # every stage cached
    assert (out / "train" / "final" / "model.safetensors").stat().st_mtime_ns == mtime
    assert rep2["results"]["after"]["engine"]["forward_calls"] == 0
    assert rep2["timing"] == rep["timing"] and rep["timing"]["train"] > 0  # a cached re-run keeps the first timings
    stages = ["mix", "train", "eval_before", "eval_after"]
    assert list(rep["peak_rss_mb_by_stage"]) == stages and all(v > 0 for v in rep["peak_rss_mb_by_stage"].values())
    assert rep["timing"]["peak_rss_mb"] == max(rep["peak_rss_mb_by_stage"].values())
    assert rep2["peak_rss_mb_by_stage"] == rep["peak_rss_mb_by_stage"]  # kept from the first run, like the timings
    assert "peak RSS " in table and "(mix " in table and ", eval after " in table
    assert json.loads((out / "run.json").read_text())["timing"] == rep["timing"]
    assert {k: v["score"] for k, v in rep2["results"]["after"]["benchmarks"]["held_in"].items()} == \
           {k: v["score"] for k, v in rep["results"]["after"]["benchmarks"]["held_in"].items()}


def test_sweep_and_report(tmp_path):
    cfg = SweepConfig(output=str(tmp_path / "s"), base=tiny_run(tmp_path, "base"), num_tasks=[2, 5], presets=["t5-1m"],
                      cot_shares=[0.0, 0.5])
    subsets = task_subsets(cfg)
    assert subsets[5][:2] == subsets[2] and len(subsets[5]) == 5  # nested subsets
    assert not any(t.startswith(("predecessor", "list_min", "last_letter", "count_even")) for t in subsets[5])
    rows = sweep(cfg, progress=False, log=lambda m: None)
    assert [r["num_tasks"] for r in rows] == [2, 2, 5, 5]
    man = json.loads((tmp_path / "s" / rows[2]["cell"] / "mixture" / "manifest.json").read_text())
    assert sorted(man["per_task"]) == sorted(subsets[5])
    r = report(tmp_path / "s")
    md = (tmp_path / "s" / "report.md").read_text()
    assert "| claim |" in md and "score_vs_tasks.png" in md
    assert all((tmp_path / "s" / p).is_file() for p in ("score_vs_tasks.png", "score_vs_params.png", "cot_by_share.png"))
    assert "data:image/png;base64" in (tmp_path / "s" / "report.html").read_text()
    claims = [e["claim"] for e in r["effects"]]
    assert any("number of tasks" in c for c in claims) and any("self-consistency" in c for c in claims)


def test_paired_diff():
    a = {str(i): 0.0 for i in range(50)}
    b = {str(i): 1.0 if i < 25 else 0.0 for i in range(50)}
    e = paired_diff(a, b)
    assert e["diff"] == 50.0 and e["ci95"][0] > 30 and e["n"] == 50
    e = paired_diff(a, a)
    assert e["diff"] == 0 and e["ci95"] == [0.0, 0.0]


def test_cli_run_bad_config(tmp_path):
    from typer.testing import CliRunner
    from flanlab.cli import app
    f = tmp_path / "run.yaml"
    f.write_text("train:\n  steps: 0\n")
    res = CliRunner().invoke(app, ["run", str(f)])
    assert res.exit_code == 2 and "run.yaml" in res.output and "train.steps" in res.output


def test_each_stage_result_says_whether_its_cache_answered(tmp_path):
    """Typed stage results: the mixture and the training are cached when the output holds their config's
    fingerprint, an evaluation when no forward pass ran; `flanlab run` reads `cached` off them."""
    from flanlab.evaluate.harness import run_eval
    from flanlab.mixture import build_mixture
    from flanlab.train.trainer import finished_training, train
    cfg = tiny_run(tmp_path).resolved()
    mix = [build_mixture(cfg.mix, progress=False) for _ in range(2)]
    assert [m.cached for m in mix] == [False, True] and mix[0].fingerprint == mix[1].fingerprint
    assert mix[1].examples == 300 and mix[1].manifest == mix[0].manifest
    assert finished_training(cfg.train) is None
    trained = [train(cfg.train, progress=False) for _ in range(2)]
    assert [t.cached for t in trained] == [False, True] and trained[1].summary == trained[0].summary
    assert finished_training(cfg.train).fingerprint == trained[0].fingerprint
    assert finished_training(cfg.train.model_copy(update={"lr": cfg.train.lr * 2})) is None  # another config
    summary = trained[0].output / "summary.json"
    edited = {**json.loads(summary.read_text()), "fingerprint": "0" * 16}
    summary.write_text(json.dumps(edited))
    assert finished_training(cfg.train) is None  # the fingerprint decides, not the files being there
    ecfg = cfg.eval.model_copy(update={"checkpoint": str(trained[0].final), "preset": None,
                                       "output": str(tmp_path / "e")})
    evals = [run_eval(ecfg) for _ in range(2)]
    assert [e.cached for e in evals] == [False, True] and evals[0].predictions == evals[1].predictions
