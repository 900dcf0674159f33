"""FSDP (strategy: fsdp), sharded checkpoints and bf16 autocast, on 2 CPU processes (gloo)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flanlab.mixture import MixConfig, build_mixture
from flanlab.outlock import process_alive

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "m"
    build_mixture(MixConfig(total_examples=1500, output=str(out)), progress=False)
    return out


def _cfg(tmp_path, name, mixture, **kw):
    d = {"mixture": str(mixture), "output": str(tmp_path / name), "steps": 6, "batch_size": 4, "grad_accum": 2,
         "save_every": 3, "log_every": 1, "model": {"preset": "t5-1m"}, "tensorboard": False, "threads": 1, **kw}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"train": d}))
    return path


def _launch(cfg, nproc: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flanlab.train.launch", str(cfg)]
    if nproc > 1:
        cmd[1:2] = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", "-m"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def _train(cfg, nproc: int) -> dict:
    p = _launch(cfg, nproc)
    out = p.communicate(timeout=600)[0].decode()
    assert p.returncode == 0, out[-3000:]
    return json.loads((cfg.parent / cfg.stem / "summary.json").read_text())


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("setup", [
    # the paper's optimizer: flanlab's ShardedAdafactor on 2 processes against transformers' Adafactor on 1, with
    # activation checkpointing (FSDP gathers each block again for its recomputation)
    {"optimizer": "adafactor", "model": {"preset": "t5-1m"}, "gradient_checkpointing": True},  # blocks recomputed
    # decoder-only with tied embeddings, LoRA (frozen and trainable weights in the same FSDP units); plain SGD without
    # clipping, so a gradient of the wrong scale (FSDP's averaging not undone) changes the weights, which
    # Adafactor's and clipping's scale invariance would hide
    {"optimizer": "sgd", "lr": 0.05, "max_grad_norm": None, "model": {"preset": "llama-1m", "lora": {"r": 4}}},
], ids=["t5-adafactor", "llama-lora-sgd"])
def test_fsdp_two_processes_match_one_process_with_half_the_parameter_bytes(mixture, tmp_path, setup):
    one = _train(_cfg(tmp_path, "one", mixture, **setup), 1)
    two = _train(_cfg(tmp_path, "two", mixture, strategy="fsdp", **setup), 2)
    assert two["world_size"] == 2 and two["strategy"] == "fsdp"
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    # the consolidated export loads like any HF checkpoint and holds the same weights
    worst = _max_diff(load_file(str(tmp_path / "one" / "final" / "model.safetensors")),
                      load_file(str(tmp_path / "two" / "final" / "model.safetensors")))
    assert worst < 1e-5
    assert _losses(tmp_path / "one")[-1] < _losses(tmp_path / "one")[0]  # trained, not two frozen models compared
    ratio = two["param_bytes_per_rank"] / one["param_bytes_per_rank"]
    assert 0.45 < ratio < 0.55, ratio  # each rank holds half the rows of every parameter (uneven splits round)
    if setup["optimizer"] == "adafactor":  # its row moments are sharded; the column moments are replicated
        assert two["optimizer_bytes_per_rank"] < 0.8 * one["optimizer_bytes_per_rank"]
    # another process count resumes the sharded checkpoint: 1 process continues the 2-process run from step 3
    cont = tmp_path / "cont"
    cont.mkdir()
    subprocess.run(["cp", "-r", str(tmp_path / "two" / "checkpoint-3"), str(cont)], check=True)
    (cont / "latest").write_text("checkpoint-3")
    assert _train(_cfg(tmp_path, "cont", mixture, strategy="fsdp", **setup), 1)["resumed_from"] == 3
    assert _losses(cont)[-3:] == pytest.approx(_losses(tmp_path / "two")[-3:], rel=1e-5)
    assert _max_diff(load_file(str(tmp_path / "two" / "final" / "model.safetensors")),
                     load_file(str(cont / "final" / "model.safetensors"))) < 1e-5


@pytest.mark.slow
def test_killing_torchrun_ends_its_workers(mixture, tmp_path):
    """torchrun puts each worker in a session of its own: SIGKILL to torchrun's process group used to leave both
    workers waiting forever on a rendezvous that was gone (runtime.die_with_parent)."""
    cfg = _cfg(tmp_path, "k", mixture, steps=200, strategy="fsdp", model={"preset": "t5-1m"})
    p, log = _launch(cfg, 2), tmp_path / "k" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (log.is_file() and log.read_text().strip()):
        assert p.poll() is None, p.stdout.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    workers = _descendants(p.pid)
    assert len(workers) >= 2
    os.killpg(p.pid, signal.SIGKILL)  # torchrun only, as `kill -9` of the launcher's group does
    p.wait()
    deadline = time.time() + 30
    while any(process_alive(pid) for pid in workers):
        if time.time() > deadline:
            for pid in workers:  # leave no orphan behind, then fail
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            pytest.fail("torchrun's workers outlived it")
        time.sleep(0.1)


# reading the sharded checkpoint in one plain process is what this test checks; torch warns that it assumes so
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled, unavailable or uninitialized")
def test_fsdp_kill9_resume_is_bit_identical_and_another_process_count_reads_the_same_weights(mixture, tmp_path):
    from flanlab.models.build import ModelSpec, build_model
    from flanlab.models.packed import PackedForward
    from flanlab.train.checkpoints import load_sharded
    from flanlab.train.optim import build_optimizer
    from flanlab.train.trainer import TrainConfig
    kw = {"steps": 30, "optimizer": "adafactor", "model": {"preset": "t5-1m", "dropout": 0.1}, "strategy": "fsdp"}
    _train(_cfg(tmp_path, "ref", mixture, **kw), 2)
    cfg = _cfg(tmp_path, "k", mixture, **kw)
    p, run = _launch(cfg, 2), tmp_path / "k"
    deadline = time.time() + 300
    while not (run / "latest").exists() or (run / "latest").read_text() == "checkpoint-3":
        assert p.poll() is None, p.stdout.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.01)
    workers = _descendants(p.pid)  # torchrun's workers: killed with it, wherever their process group is
    os.killpg(p.pid, signal.SIGKILL)  # the launcher and both workers, possibly mid-write of the next checkpoint
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    assert workers and not (run / "final").exists(), "run finished before the kill; the test proves nothing"
    deadline = time.time() + 60
    while any(process_alive(pid) for pid in workers):  # a killed process lingers until the kernel reaps it
        assert time.time() < deadline
        time.sleep(0.1)
    summary = _train(cfg, 2)
    assert summary["resumed_from"] >= 6 and not list(run.glob(".tmp-*"))
    a = load_file(str(tmp_path / "ref" / "final" / "model.safetensors"))
    assert _max_diff(a, load_file(str(run / "final" / "model.safetensors"))) == 0.0
    assert _losses(run) == _losses(tmp_path / "ref")
    # one process reads the 2-process shards of step 30: the same weights as the consolidated export of step 30
    ckpt = tmp_path / "ref" / "checkpoint-30"
    assert sorted(f.name for f in (ckpt / "sharded").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    tc = TrainConfig(**kw)
    model, _ = build_model(ModelSpec(preset="t5-1m", dropout=0.1), seed=123)  # other initial weights
    opt = build_optimizer(tc, list(model.parameters()))
    load_sharded(PackedForward(model), opt, ckpt / "sharded")
    assert _max_diff(a, {k: v for k, v in model.state_dict().items() if k in a}) == 0.0
    state = next(iter(opt.state.values()))
    assert state["step"] == 30 and {"exp_avg_sq_row", "exp_avg_sq_col"} <= state.keys()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (children, their children, ...)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        kids = [c for c, pp in parent.items() if pp == cur]
        out += kids
        todo += kids
    return out


def test_resuming_across_strategies_is_refused_with_the_reason(mixture, tmp_path):
    from flanlab.errors import FlanlabError
    from flanlab.train.trainer import load_train_config, train
    _train(_cfg(tmp_path, "r", mixture, steps=3, save_every=3), 1)
    (tmp_path / "r" / "summary.json").unlink()  # unfinished: the next call resumes from checkpoint-3
    cfg = load_train_config(_cfg(tmp_path, "r", mixture, steps=6, strategy="fsdp"))
    with pytest.raises(FlanlabError, match="strategy ddp.*resume it with that strategy") as e:
        train(cfg, progress=False, file="r.yaml")
    assert "field 'strategy'" in str(e.value) or "strategy" in str(e.value)
    assert (tmp_path / "r" / "checkpoint-3" / "model.safetensors").is_file()  # nothing lost


@pytest.mark.slow
def test_bf16_autocast_trains_close_to_fp32_with_fp32_weights(mixture, tmp_path):
    from flanlab.models.build import ModelSpec, build_model
    from flanlab.train.trainer import load_train_config, train
    runs = {}
    for precision in ("fp32", "bf16"):
        for preset in ("t5-1m", "llama-1m"):
            name = f"{precision}-{preset}"
            cfg = load_train_config(_cfg(tmp_path, name, mixture, steps=6, precision=precision,
                                         model={"preset": preset}, optimizer="adafactor", lr=3e-3))
            train(cfg, progress=False)
            runs[name] = (_losses(tmp_path / name), load_file(str(tmp_path / name / "final" / "model.safetensors")))
    for preset in ("t5-1m", "llama-1m"):
        (l32, w32), (l16, w16) = runs[f"fp32-{preset}"], runs[f"bf16-{preset}"]
        assert all(map(torch.isfinite, map(torch.tensor, l16)))
        assert l16 == pytest.approx(l32, rel=1e-2)
        assert l16 != l32  # bf16 really ran: its rounding shows in the losses
        assert all(w.dtype == torch.float32 for w in w16.values())  # master weights stay fp32
        # the bf16 run moved the weights where the fp32 run did: the difference is small next to the update itself
        w0 = build_model(ModelSpec(preset=preset), seed=0)[0].state_dict()
        assert _distance(w32, w16) < 0.1 * _distance(w32, w0)
    # FSDP in bf16 (blocks gathered as bfloat16, gradients reduced in fp32) on 2 processes: close to 1 process
    two = _cfg(tmp_path, "bf16-fsdp", mixture, steps=6, precision="bf16", strategy="fsdp", model={"preset": "llama-1m"},
               optimizer="adafactor", lr=3e-3)
    assert _train(two, 2)["precision"] == "bf16"
    l1, l2 = runs["bf16-llama-1m"][0], _losses(tmp_path / "bf16-fsdp")
    assert l2 == pytest.approx(l1, rel=1e-2)
    w2 = load_file(str(tmp_path / "bf16-fsdp" / "final" / "model.safetensors"))
    assert all(w.dtype == torch.float32 for w in w2.values())
    # as above: 2 processes land where 1 did, measured against how far the 6 steps moved the weights
    w1, w0 = runs["bf16-llama-1m"][1], build_model(ModelSpec(preset="llama-1m"), seed=0)[0].state_dict()
    assert _distance(w2, w1) < 0.1 * _distance(w1, w0)


def _distance(a: dict, b: dict) -> float:
    """L2 distance between two state dicts over a's tensors."""
    return float(sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt())


def test_fsdp_units_are_the_transformer_blocks():
    """One FSDP unit per block (the model's _no_split_modules), plus T5's relative position bias tables, which the
    per-segment path reads outside their blocks; LoRA wrappers keep the same blocks."""
    from flanlab.models.build import LoraSpec, ModelSpec, build_model
    from flanlab.train.strategy import shard_units
    t5, _ = build_model(ModelSpec(preset="t5-1m"))
    names = [type(u).__name__ for u in shard_units(t5)]
    assert names == ["Embedding", "Embedding"] + ["T5Block"] * 4  # 2 encoder + 2 decoder blocks
    assert shard_units(t5)[0] is t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    llama, _ = build_model(ModelSpec(preset="llama-1m", lora=LoraSpec(r=4)))
    assert [type(u).__name__ for u in shard_units(llama)] == ["LlamaDecoderLayer"] * 4
