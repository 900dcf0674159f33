"""A newcomer's first hour: clear errors instead of tracebacks, output that reads right, nothing destroyed."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flanlab.config import apply_overrides
from flanlab.errors import FlanlabError
from flanlab.mixture import CollectionSpec, MixConfig, build_mixture

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import cli, write  # noqa: E402


# ---------------------------------------------------------------------------- errors, not tracebacks

def test_override_without_equals_is_an_error(tmp_path):
    cfg = write(tmp_path / "t.yaml", "train: {steps: 2, mixture: nowhere}\n")
    code, text = cli("train", cfg, "steps")
    assert code == 2 and "override 'steps' is not key=value" in text


def test_a_bad_override_value_is_echoed_cut_to_80_characters(tmp_path):
    cfg = write(tmp_path / "t.yaml", "train: {steps: 2, mixture: nowhere}\n")
    code, text = cli("train", cfg, "steps=" + "x" * 500)
    line = next(ln for ln in text.splitlines() if "field 'steps'" in ln)
    assert code == 2 and "valid integer" in line and "(got 'xxxx" in line and "..." in line and len(line) < 200
    code, text = cli("train", cfg, "precision=fp16")
    assert code == 2 and "Input should be 'fp32' or 'bf16' (got 'fp16')" in text


def test_every_help_lists_its_flags_without_a_type():
    for args in ([], ["mix"], ["run"], ["tasks"], ["tasks", "show"], ["compare"]):
        code, text = cli(*args, "--help")
        assert code == 0 and "--help" in text and "<bool>" not in text, args


def test_nested_overrides():
    d = apply_overrides({"model": {"preset": "t5-1m", "dropout": 0.1}, "steps": 5},
                        ["model.preset=t5-5m", "steps=10", "model.lora.r=4"])
    assert d == {"model": {"preset": "t5-5m", "dropout": 0.1, "lora": {"r": 4}}, "steps": 10}
    with pytest.raises(FlanlabError, match="'steps' is not a section"):
        apply_overrides({"steps": 5}, ["steps.x=1"])


def test_nproc_validates_before_launching_processes(tmp_path):
    t = time.time()
    code, text = cli("train", "--nproc", "2", tmp_path / "missing.yaml")
    assert code == 2 and "missing.yaml: file not found" in text and "torch.distributed" not in text
    bad = write(tmp_path / "bad.yaml", "train: {steps: -1}\n")
    code, text = cli("train", "--nproc", "2", bad)
    assert code == 2 and "field 'train.steps'" in text
    assert time.time() - t < 10  # no torchrun was started


def test_missing_benchmark_path_is_named_at_once(tmp_path):
    cfg = write(tmp_path / "e.yaml", "eval:\n  preset: t5-1m\n  benchmarks:\n    - {name: bbh, path: data/nope}\n")
    t = time.time()
    code, text = cli("eval", cfg)
    assert code == 2 and "data/nope: field 'benchmarks[0].path': benchmark data not found" in text
    assert time.time() - t < 10


BAD = "caf\xe9".encode("latin-1")  # é in Latin-1: byte 0xe9 is not UTF-8 here


@pytest.mark.parametrize("kind", ["yaml", "jsonl", "tsv", "csv", "cot_tsv", "mmlu"])
def test_non_utf8_input_names_file_line_and_byte(tmp_path, kind):
    good = {"jsonl": b'{"question": "q1", "answer": "a"}\n{"question": "' + BAD + b'", "answer": "a"}\n',
            "tsv": b"question\tanswer\nq1\ta\n" + BAD + b"\ta\n", "csv": b"question,answer\nq1,a\n" + BAD + b",a\n",
            "cot_tsv": b"q1\ta\tr\n" + BAD + b"\ta\tr\n"}
    if kind == "yaml":
        cfg = tmp_path / "m.yaml"
        cfg.write_bytes(b"mix:\n  seed: 0\n  # " + BAD + b"\n")
        code, text = cli("mix", cfg)
        want = f"{cfg}: line 3: not valid UTF-8 (byte 0xe9 at column 8)"
    elif kind == "mmlu":
        for split in ("dev", "test"):
            (tmp_path / "mmlu" / split).mkdir(parents=True)
            (tmp_path / "mmlu" / split / f"anatomy_{split}.csv").write_bytes(b"q,a,b,c,d,A\n" + BAD + b",a,b,c,d,B\n")
        cfg = write(tmp_path / "e.yaml", "eval:\n  preset: t5-1m\n  benchmarks:\n    - {name: mmlu, path: mmlu}\n")
        code, text = cli("eval", cfg, "-o", tmp_path / "out")
        want = "anatomy_dev.csv: line 2: not valid UTF-8 (byte 0xe9 at column 4)"
    else:
        data = tmp_path / f"d.{kind.split('_')[-1]}"
        data.write_bytes(good[kind])
        tasks = write(tmp_path / "t.yaml", f"tasks:\n  - {{dataset: d, category: qa, collection: c, source: {{type: {kind}, "
                                           f"path: {data.name}}}, templates: [{{input: '{{question}}'}}]}}\n")
        cfg = write(tmp_path / "m.yaml", f"mix:\n  output: {tmp_path / 'out'}\n  registry: {{task_files: [{tasks}]}}\n"
                                         "  collections: [{name: c, tasks: ['@c']}]\n")
        code, text = cli("mix", cfg)
        line, col = {"jsonl": (2, 18), "tsv": (3, 4), "csv": (3, 4), "cot_tsv": (2, 4)}[kind]
        want = f"{data}: line {line}: not valid UTF-8 (byte 0xe9 at column {col})"
    assert code == 2 and want in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_report_on_directory_without_cells(tmp_path):
    code, text = cli("report", tmp_path)
    assert code == 2 and "not a run, sweep or evaluation directory" in text
    write(tmp_path / "sweep.json", json.dumps({"rows": [{"cell": "c0", "num_tasks": 2, "preset": "t5-1m", "params": 1,
                                                          "cot_share": 0.0, "seed": 0, "scores": {}}]}))
    code, text = cli("report", tmp_path)
    assert code == 2 and "predictions.jsonl: sweep cell has no evaluation results" in text


def test_errors_keep_brackets_and_name_full_field_paths(tmp_path):
    cfg = write(tmp_path / "m.yaml", "mix:\n  output: %s\n  collections:\n    - {name: c, tasks: ['reverse_[xyz]*']}\n"
                % (tmp_path / "out"))
    code, text = cli("mix", cfg)
    assert code == 2 and "pattern 'reverse_[xyz]*' matches no task" in text and "collections[0].tasks" in text
    cfg2 = write(tmp_path / "m2.yaml", "mix:\n  collections:\n    - {name: c}\n")
    code, text = cli("mix", cfg2)
    assert code == 2 and "field 'mix.collections[0].tasks'" in text


def test_unknown_names_suggest_the_nearest(tmp_path):
    code, text = cli("tasks", "show", "reverse_word:animal")
    assert code == 2 and "did you mean 'reverse_word:animals'" in text
    cfg = write(tmp_path / "t.yaml", "train: {mixture: x, model: {preset: t5-5n}}\n")
    code, text = cli("train", cfg)
    assert code == 2 and "t.yaml: field 'train.model.preset'" in text and "did you mean 't5-5m'" in text
    code, text = cli("train", write(tmp_path / "u.yaml", "train: {mixture: x}\n"), "model.preset=t5-5mm")
    assert code == 2 and "<command line>: field 'model.preset'" in text
    from flanlab.models.build import build_config
    with pytest.raises(FlanlabError, match="did you mean 't5-5m'"):
        build_config("t5-5n")


def test_empty_data_file_and_fully_excluded_collection(tmp_path):
    write(tmp_path / "empty.jsonl", "")
    tf = write(tmp_path / "tasks.yaml", "tasks:\n  - {dataset: e, category: qa, source: {type: jsonl, path: empty.jsonl, "
                                        "fields: {answer: a}}, templates: [{input: '{answer}'}]}\n")
    from flanlab.mixture import RegistrySpec
    with pytest.raises(FlanlabError, match="empty.jsonl: data file has no rows"):
        RegistrySpec(task_files=[str(tf)]).build()
    with pytest.raises(FlanlabError, match=r"collection 'c' has no trainable task \(all excluded: last_letter:animals: "
                                           "held-out task"):
        build_mixture(MixConfig(output=str(tmp_path / "o"), collections=[CollectionSpec(name="c", tasks=["last_letter:a*"])]),
                      progress=False)


# ---------------------------------------------------------------------------- output that reads right

def test_tasks_list_piped_is_one_line_per_task():
    code, text = cli("tasks", "list")
    lines = text.splitlines()
    assert code == 0 and lines[0].split("\t")[0] == "task"
    row = next(line.split("\t") for line in lines if line.startswith("evaluate_boolean:bool_triples\t"))
    assert row[1:4] == ["bool_triples", "evaluate_boolean", "synthetic"]


def test_tasks_show_keeps_format_tags():
    code, text = cli("tasks", "show", "parity:tens", "--n", "1")
    assert code == 0 and "[zs_noopt_direct]" in text and "[zs_opt_direct]" in text


def test_python_dash_m_flanlab():
    r = subprocess.run([sys.executable, "-m", "flanlab", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "mix" in r.stdout and "eval" in r.stdout


# ---------------------------------------------------------------------------- nothing destroyed

def test_overwrite_never_replaces_a_foreign_directory(tmp_path):
    mine = tmp_path / "notes"
    write(mine / "thesis.txt", "years of work")
    cfg = MixConfig(output=str(mine), total_examples=200, overwrite=True)
    with pytest.raises(FlanlabError, match="not a flanlab mixture"):
        build_mixture(cfg, progress=False)
    assert (mine / "thesis.txt").read_text() == "years of work"
    out = tmp_path / "mix"
    build_mixture(MixConfig(output=str(out), total_examples=200), progress=False)
    with pytest.raises(FlanlabError, match="built from a different config"):
        build_mixture(MixConfig(output=str(out), total_examples=300), progress=False)
    man = build_mixture(MixConfig(output=str(out), total_examples=300, overwrite=True), progress=False).manifest
    assert man["examples"] == 300


def test_killed_mix_leaves_no_partial_directories(tmp_path):
    out = tmp_path / "mix"
    stale = tmp_path / ".mix.partial-999999"  # a process that no longer exists
    write(stale / "shard-00000.jsonl", "{}\n")
    build_mixture(MixConfig(output=str(out), total_examples=200), progress=False)
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["mix"]


def test_small_dataset_repetition_warning(tmp_path):
    write(tmp_path / "d.jsonl", "".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) + "\n" for i in range(42)))
    tf = write(tmp_path / "tasks.yaml", "tasks:\n  - {dataset: d, category: qa, source: {type: jsonl, path: d.jsonl, "
                                        "fields: {q: q, answer: a}}, templates: [{input: '{q}'}]}\n")
    cfg = write(tmp_path / "m.yaml", f"mix:\n  output: {tmp_path / 'out'}\n  total_examples: 5000\n  registry: "
                                     f"{{task_files: [{tf}]}}\n  collections: [{{name: c, tasks: ['qa:d'], cap: 100000}}]\n")
    code, text = cli("mix", cfg, "--no-progress")
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    n_train = man["plan"][0]["effective_size"]
    assert code == 0 and man["warnings"] == [f"task 'qa:d': {n_train} training rows drawn 5000 times "
                                             f"(each row about {5000 / n_train:.0f}x)"]
    assert "warning: task 'qa:d'" in text


def test_moved_run_directory_hits_its_stage_cache(tmp_path):
    from test_experiments import tiny_run
    from flanlab.experiments.run import run
    run(tiny_run(tmp_path, "a"), progress=False, log=lambda m: None)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    logs = []
    rep = run(tiny_run(tmp_path, "b"), progress=False, log=logs.append)
    assert rep["train"]["resumed_from"] == 0 and not (tmp_path / "a").exists()
    first = json.loads((tmp_path / "b" / "train" / "summary.json").read_text())
    assert rep["train"]["seconds"] == first["seconds"]  # the cached summary: nothing retrained
    assert rep["results"]["after"]["engine"]["forward_calls"] == 0  # evaluation answered from its cache


def test_resume_says_so_and_logs_each_step_once(tmp_path, monkeypatch):
    from flanlab.train import trainer
    from flanlab.train.trainer import TrainConfig, train
    build_mixture(MixConfig(output=str(tmp_path / "mix"), total_examples=300, max_input_len=200), progress=False)
    cfg = TrainConfig(mixture=str(tmp_path / "mix"), output=str(tmp_path / "t"), steps=4, batch_size=4, save_every=2,
                      log_every=1, max_input_len=200, max_target_len=96, tensorboard=False)
    real_step = trainer.train_step

    def dies_at_step_4(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies during step 4; the last checkpoint is step 2
        calls.append(1)
        return real_step(*args, **kwargs)
    calls = []
    monkeypatch.setattr(trainer, "train_step", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(trainer, "train_step", real_step)
    (tmp_path / "t" / ".tmp-checkpoint-4-123").mkdir()  # a half-written checkpoint of the killed run
    logs = []
    train(cfg, progress=False, log=logs.append)
    assert logs == ["[train] resuming from checkpoint-2 (step 2 of 4)"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4] and not list((tmp_path / "t").glob(".tmp-*"))


def test_second_process_on_one_output_refuses_with_the_first_pid(tmp_path):
    build_mixture(MixConfig(output=str(tmp_path / "mix"), total_examples=300, max_input_len=200), progress=False)
    cfg = write(tmp_path / "t.yaml", f"train: {{mixture: {tmp_path / 'mix'}, output: {tmp_path / 't'}, steps: 400, "
                                     "batch_size: 4, save_every: 400, max_input_len: 200, max_target_len: 96, "
                                     "tensorboard: false, model: {preset: t5-1m}}\n")
    first = subprocess.Popen([sys.executable, "-m", "flanlab", "train", str(cfg), "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / ".t.lock"
        deadline = time.time() + 120
        while not lock.exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        code, text = cli("train", cfg)
        assert code == 2 and f"in use by another flanlab process (pid {first.pid})" in text and str(tmp_path / "t") in text
    finally:
        first.kill()
        first.wait()
    # the first process is gone: its lock no longer holds the output (the run continues as a resume would)
    assert lock.exists()
    man = build_mixture(MixConfig(output=str(tmp_path / "mix2"), total_examples=100), progress=False).manifest
    assert man["examples"] == 100
    write(tmp_path / ".mix2.lock", f"{first.pid}\n")  # a dead owner's lock: taken over
    build_mixture(MixConfig(output=str(tmp_path / "mix2"), total_examples=100), progress=False)
    assert not (tmp_path / ".mix2.lock").exists()
    steps = [json.loads(x)["step"] for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()] \
        if (tmp_path / "t" / "metrics.jsonl").exists() else []
    assert len(steps) == len(set(steps))  # the refused process wrote nothing into the first one's log


def test_newcomer_bad_inputs_are_one_line_each(tmp_path):
    for bad in ("0", "-1"):
        code, text = cli("train", "--nproc", bad, tmp_path / "t.yaml")
        assert code == 2 and "--nproc" in text and "greater than or equal to 1" in text
        code, text = cli("eval", "--nproc", bad, tmp_path / "e.yaml")
        assert code == 2 and "--nproc" in text
    long_name = tmp_path / ("x" * 300 + ".yaml")
    code, text = cli("mix", long_name)
    assert code == 2 and "file name too long" in text and "Traceback" not in text
    cfg = write(tmp_path / "t.yaml", "train: {steps: 2, mixture: nowhere}\n")
    code, text = cli("train", cfg, "steps" + "9" * 200)
    assert code == 2 and ("steps" + "9" * 72 + "...'") in text and "9" * 100 not in text
    weights = write(tmp_path / "model.safetensors", "not a checkpoint")
    ecfg = write(tmp_path / "e.yaml", "eval:\n  benchmarks: [{name: synthetic, subsets: [held_out], limit: 1}]\n")
    code, text = cli("eval", ecfg, "-c", weights, "-o", tmp_path / "out")
    assert code == 2 and "a checkpoint is a directory (config.json and weights) or a .gguf file" in text
    assert not (tmp_path / "out").exists()


def test_run_takes_overrides_and_nproc(tmp_path):
    code, text = cli("run", "train.steps=notanumber", "-o", tmp_path / "r")
    assert code == 2 and "<command line>: field 'train.steps'" in text and not (tmp_path / "r").exists()
    code, text = cli("run", "--nproc", "0")
    assert code == 2 and "--nproc" in text


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch):
    from flanlab.train import trainer
    build_mixture(MixConfig(output=str(tmp_path / "mix"), total_examples=300, max_input_len=200), progress=False)
    cfg = write(tmp_path / "t.yaml", f"train: {{mixture: {tmp_path / 'mix'}, output: {tmp_path / 't'}, steps: 4, "
                                     "batch_size: 4, save_every: 2, max_input_len: 200, max_target_len: 96, "
                                     "tensorboard: false}\n")
    real_step, calls = trainer.train_step, []

    def ctrl_c_in_step_3(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args, **kwargs)
    monkeypatch.setattr(trainer, "train_step", ctrl_c_in_step_3)
    code, text = cli("train", cfg, "--no-progress")
    lines = [x for x in text.splitlines() if x.strip()]
    assert code == 130 and lines[-1] == (f"interrupted: checkpoints up to checkpoint-2 are in {tmp_path / 't'}; "
                                         f"`flanlab train {cfg}` resumes from the latest one")
    assert not (tmp_path / ".t.lock").exists()  # the lock went with the interrupted process


def test_final_loss_is_the_last_logged_line(tmp_path):
    from flanlab.train.trainer import TrainConfig, train
    build_mixture(MixConfig(output=str(tmp_path / "mix"), total_examples=300, max_input_len=200), progress=False)
    logs = []
    s = train(TrainConfig(mixture=str(tmp_path / "mix"), output=str(tmp_path / "t"), steps=6, batch_size=4,
                          save_every=6, log_every=3, max_input_len=200, max_target_len=96, tensorboard=False),
              progress=False, log=logs.append).summary
    last = json.loads((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["step"], s["final_loss_steps"]) == (6, 3) and s["final_loss"] == pytest.approx(last["loss"], abs=1e-5)
    assert s["last_step_loss"] != pytest.approx(s["final_loss"], abs=1e-6)  # one step alone is another quantity


def test_importing_flanlab_leaves_the_environment_alone_and_a_command_chooses_the_policy(tmp_path):
    code = ("import os; import flanlab, flanlab.cli, flanlab.evaluate.harness, flanlab.train.trainer, flanlab.mixture; "
            "print('OMP_WAIT_POLICY' in os.environ)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "False"
    code = "import os; from flanlab.cli import app; app(['tasks', 'list'], standalone_mode=False); print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] in ("ACTIVE", "PASSIVE")


def test_openmp_wait_policy_follows_the_load_and_the_user_wins(monkeypatch):
    from flanlab import runtime as flanlab
    monkeypatch.setattr(flanlab, "_usable_cores", lambda: 2)
    for load, want in ((0.2, "ACTIVE"), (0.99, "ACTIVE"), (1.0, "PASSIVE"), (3.5, "PASSIVE")):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.setattr(flanlab.os, "getloadavg", lambda load=load: (load, load, load))
        got = flanlab.choose_wait_policy()
        assert got["omp_wait_policy"] == want == flanlab.os.environ["OMP_WAIT_POLICY"]
        assert got["chosen_by"] == f"load average {load:.2f} on 2 usable cores"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert flanlab.choose_wait_policy() == {"omp_wait_policy": "passive", "chosen_by": "OMP_WAIT_POLICY set by the user"}


def test_a_failed_start_leaves_no_directories(tmp_path):
    ecfg = write(tmp_path / "e.yaml", "eval:\n  benchmarks: [{name: bbh, path: nowhere}]\n")
    code, text = cli("eval", ecfg, "-o", tmp_path / "runs" / "deep" / "eval")
    assert code == 2 and "benchmark data not found" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.yaml"]  # no runs/, no lock


def test_train_takes_the_output_folder_from_dash_o_like_mix_and_eval(tmp_path):
    code, text = cli("mix", write(tmp_path / "m.yaml", "mix: {total_examples: 200}\n"), "-o", tmp_path / "mix",
                     "--no-progress")
    assert code == 0, text
    cfg = write(tmp_path / "t.yaml", f"train: {{mixture: {tmp_path / 'mix'}, steps: 2, batch_size: 2, "
                                     f"model: {{preset: t5-0.5m}}, output: {tmp_path / 'from_config'}, tensorboard: false}}\n")
    code, text = cli("train", cfg, "-o", tmp_path / "from_flag", "--no-progress")
    assert code == 0, text
    assert (tmp_path / "from_flag" / "final").is_dir() and not (tmp_path / "from_config").exists()
