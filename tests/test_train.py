"""The training loop (flanlab/train/): loss goes down, checkpoints load, resume after kill -9 and DDP are bit-exact,
bf16 and LoRA, learning-rate schedules. Packing and per-segment attention: test_packed_attention.py."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from flanlab.mixture import MixConfig, build_mixture
from flanlab.models.build import ModelSpec, build_model
from flanlab.models.packed import collate
from flanlab.models.tokenizer import ByteTokenizer
from flanlab.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "m"
    build_mixture(MixConfig(total_examples=1500, output=str(out)), progress=False)
    return out


def test_training_reduces_loss_and_writes_hf_checkpoint(mixture, tmp_path):
    from transformers import AutoModelForSeq2SeqLM
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "t"), steps=30, batch_size=8, log_every=10, save_every=15,
                      lr=3e-3)
    s = train(cfg, progress=False).summary
    logs = [json.loads(l) for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert logs[-1]["loss"] < logs[0]["loss"] * 0.8 and logs[-1]["tokens_per_s"] > 0
    m = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "t" / "final")
    assert sum(p.numel() for p in m.parameters()) == s["params"]
    assert (tmp_path / "t" / "final" / "model.safetensors").is_file()
    assert not list((tmp_path / "t").glob(".tmp*"))


def test_adamw_warmup_and_llama(mixture, tmp_path):
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "t"), steps=6, batch_size=4, optimizer="adamw",
                      warmup_steps=4, log_every=1, model=ModelSpec(preset="llama-1m", dropout=0.1))
    train(cfg, progress=False)
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    # metrics log the lr each step used: warmup reaches the full lr at step 4
    assert lrs[:6] == pytest.approx([cfg.lr * k / 4 for k in (1, 2, 3, 4, 4, 4)])


def test_lora_trains_only_adapters(mixture, tmp_path):
    from flanlab.models.build import LoraSpec
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "t"), steps=4, batch_size=4, save_every=2,
                      model=ModelSpec(preset="t5-1m", lora=LoraSpec(r=4)))
    train(cfg, progress=False)
    base, _ = build_model(ModelSpec(preset="t5-1m"), seed=0)
    final = load_file(str(tmp_path / "t" / "final" / "model.safetensors"))
    sd = base.state_dict()
    changed = [k for k in final if not torch.equal(final[k], sd[k])]
    assert changed and all(("q.weight" in k or "v.weight" in k) for k in changed)


def _run(cfg_path, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "flanlab.train.launch", str(cfg_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _write_cfg(path, mixture, out, **kw):
    import yaml
    d = {"mixture": str(mixture), "output": str(out), "steps": 24, "batch_size": 4, "save_every": 3, "log_every": 1,
         "model": {"preset": "t5-1m", "dropout": 0.1}, "tensorboard": False, "threads": 1, **kw}
    path.write_text(yaml.safe_dump({"train": d}))
    return path


def test_resume_after_kill9_is_bit_identical(mixture, tmp_path):
    ref_cfg = _write_cfg(tmp_path / "ref.yaml", mixture, tmp_path / "ref")
    p = _run(ref_cfg)
    assert p.wait(300) == 0, p.stdout.read().decode()
    cfg = _write_cfg(tmp_path / "k.yaml", mixture, tmp_path / "k")
    p = _run(cfg)
    deadline = time.time() + 300
    while not (tmp_path / "k" / "checkpoint-6").exists():
        assert p.poll() is None, p.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "k" / "final").exists(), "run finished before the kill; test proves nothing"
    p = _run(cfg)
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, out
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert summary["resumed_from"] >= 6
    a = load_file(str(tmp_path / "ref" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "k" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(l)["loss"] for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    lb = {json.loads(l)["step"]: json.loads(l)["loss"] for l in (tmp_path / "k" / "metrics.jsonl").read_text().splitlines()}
    assert [lb[s] for s in range(1, 25)] == la


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once_when_run_again(mixture, tmp_path):
    cfg = _write_cfg(tmp_path / "k.yaml", mixture, tmp_path / "k", steps=12, save_every=100)
    p = _run(cfg)
    log, deadline = tmp_path / "k" / "metrics.jsonl", time.time() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert p.poll() is None, p.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not list((tmp_path / "k").glob("checkpoint-*")) and not (tmp_path / "k" / "final").exists()
    p = _run(cfg)
    assert p.wait(300) == 0, p.stdout.read().decode()
    steps = [json.loads(l)["step"] for l in log.read_text().splitlines()]
    assert steps == list(range(1, 13))  # the killed run's steps are not left beside the new run's


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(mixture, tmp_path):
    """Plain SGD without clipping: a gradient of the wrong scale (e.g. DDP's averaging not undone) changes the
    weights, which Adafactor's and clipping's scale invariance would hide."""
    sgd = {"model": {"preset": "t5-1m"}, "grad_accum": 2, "optimizer": "sgd", "lr": 0.05, "max_grad_norm": None}
    single = _write_cfg(tmp_path / "s.yaml", mixture, tmp_path / "s", steps=6, **sgd)
    assert _run(single).wait(300) == 0
    ddp = _write_cfg(tmp_path / "d.yaml", mixture, tmp_path / "d", steps=6, **sgd)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                        "-m", "flanlab.train.launch", str(ddp)], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["world_size"] == 2
    ls = [json.loads(l)["loss"] for l in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    ld = [json.loads(l)["loss"] for l in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert ld == pytest.approx(ls, rel=1e-4)
    a = load_file(str(tmp_path / "s" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "d" / "final" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, sorted(((a[k] - b[k]).abs().max().item(), k) for k in a)[-3:]
    assert ls[-1] < ls[0]  # SGD at this rate trains: the comparison is not between two frozen models


def test_group_by_length_keeps_every_row_and_cuts_padding(mixture):
    from flanlab.train.trainer import DataStream
    tok = ByteTokenizer()
    plain = DataStream(TrainConfig(mixture=str(mixture), batch_size=4), tok, True)
    grouped = DataStream(TrainConfig(mixture=str(mixture), batch_size=4, group_by_length=True), tok, True)
    n = plain._steps(0)
    assert grouped._steps(0) == n
    ids = lambda ds: sorted(tuple(tuple(e.inputs) for e in r) for r in ds.epoch_rows(0))  # noqa: E731
    assert ids(plain) == ids(grouped)  # the same rows, in another order

    def padded(ds):
        return sum(collate(ds.step_rows(s), True)["dec_seg"].numel() for s in range(n))
    assert padded(grouped) < padded(plain)
    again = DataStream(TrainConfig(mixture=str(mixture), batch_size=4, group_by_length=True), tok, True)
    assert [len(r) for r in again.step_rows(5)] == [len(r) for r in grouped.step_rows(5)]
    # turning the option on is a different config; leaving it off keeps earlier fingerprints
    from flanlab.train.trainer import config_fingerprint
    assert config_fingerprint(TrainConfig(group_by_length=True)) != config_fingerprint(TrainConfig())


def test_resume_restores_each_ranks_own_rng_state(tmp_path):
    """Under DDP every rank saves its RNG state into the checkpoint and gets its own back (dropout masks differ by
    rank, so rank 0's state on every rank would change the resumed run)."""
    from flanlab.train.checkpoints import CheckpointStore, rng_state
    model, tok = build_model(ModelSpec(preset="t5-0.5m"), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    states, expected = [], []
    for rank in range(2):
        torch.manual_seed(100 + rank)
        states.append(rng_state())
        expected.append(torch.rand(4))
    store = CheckpointStore(tmp_path, keep=2, fingerprint="fp")
    ckpt = store.save(3, model, tok, opt, sched, states)
    for rank in range(2):
        torch.manual_seed(0)
        assert store.restore(ckpt, model, opt, sched, rank, file="t.yaml") == 3
        assert torch.equal(torch.rand(4), expected[rank])


def test_failures_on_the_side_are_said_not_swallowed(tmp_path, monkeypatch):
    """TensorBoard that cannot start, and a checkpoint whose untied LM head is missing, are logged with the reason."""
    import types
    from flanlab.train.checkpoints import load_weights
    from flanlab.train.metrics import MetricsSink

    def broken(*a, **k):
        raise PermissionError("read-only file system")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=broken))
    logs = []
    with MetricsSink(tmp_path, enabled=True, tensorboard=True, progress=False, total=2, start=0, log=logs.append) as m:
        m.record(1, 1.0, 0.1, 100, 1.0)
    assert logs == ["[train] TensorBoard logging off: PermissionError: read-only file system"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 1  # training's own log still written
    model, tok = build_model(ModelSpec(preset="llama-1m", overrides={"tie_word_embeddings": False}), seed=0)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    from safetensors.torch import save_file
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({k: v.clone() for k, v in model.state_dict().items() if not k.startswith("lm_head")},
              str(ckpt / "model.safetensors"))
    notes = load_weights(model, ckpt)
    assert len(notes) == 1 and "no lm_head weights" in notes[0]

def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32_and_says_so(mixture, tmp_path, monkeypatch):
    from flanlab.models import device
    monkeypatch.delenv("FLANLAB_EMULATED_BF16", raising=False)
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)
    said = []
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "r"), steps=1, batch_size=2, precision="bf16",
                      model=ModelSpec(preset="t5-1m"), tensorboard=False, device="cpu")
    assert train(cfg, progress=False, log=said.append).summary["precision"] == "fp32"
    assert any("no native bfloat16" in m and "fp32" in m for m in said)
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)  # a bf16 CPU trains in bf16 as asked
    cfg = cfg.model_copy(update={"output": str(tmp_path / "r2")})
    assert train(cfg, progress=False, log=said.append).summary["precision"] == "bf16"


def test_lora_with_frozen_weights_in_bf16_trains_like_fp32_storage_and_publishes_fp32(mixture, tmp_path,
                                                                                       monkeypatch):
    """frozen_weights: bf16 stores the frozen base in bfloat16 and keeps the adapters fp32; the losses follow the
    fp32-storage run closely (the base is rounded once), resume restores the same run, and final/ is merged in
    fp32 (a bf16 merge would round away most of the adapter's update)."""
    from flanlab.models import device
    from flanlab.models.build import LoraSpec
    from flanlab.train.trainer import build_for_training
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)
    spec = ModelSpec(preset="llama-1m", lora=LoraSpec(r=4))
    kw = dict(mixture=str(mixture), steps=6, batch_size=4, optimizer="adamw", lr=3e-3, log_every=1,
              precision="bf16", model=spec, tensorboard=False, device="cpu")
    cfg = TrainConfig(output=str(tmp_path / "b"), frozen_weights="bf16", **kw)
    model, _ = build_for_training(cfg)
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    train(cfg, progress=False)
    train(TrainConfig(output=str(tmp_path / "f"), **kw), progress=False)
    loss = {k: [json.loads(l)["loss"] for l in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
            for k in ("b", "f")}
    assert loss["b"] != loss["f"]  # not the same computation...
    assert loss["b"] == pytest.approx(loss["f"], rel=0.02)  # ...but the same training
    final = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert {t.dtype for t in final.values()} == {torch.float32}
    with pytest.raises(ValueError, match="needs model.lora"):
        TrainConfig(frozen_weights="bf16", precision="bf16", model=ModelSpec(preset="llama-1m"))
    with pytest.raises(ValueError, match="needs precision: bf16"):
        TrainConfig(frozen_weights="bf16", model=spec)
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)  # no bf16 CPU: fp32 autocast and storage
    monkeypatch.delenv("FLANLAB_EMULATED_BF16", raising=False)
    summary = train(cfg.model_copy(update={"output": str(tmp_path / "n"), "steps": 1}), progress=False).summary
    assert (summary["precision"], summary["frozen_weights"]) == ("fp32", "fp32")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_learning_rate_follows_transformers_schedules_and_is_logged(mixture, tmp_path, schedule):
    """After warm-up the rate follows transformers' get_{linear,cosine}_schedule_with_warmup step for step and
    reaches min_lr_ratio x lr at the last step; a decaying schedule ties the run to its step count."""
    import transformers
    from flanlab.train.optim import lr_factor
    from flanlab.train.trainer import config_fingerprint
    ref = getattr(transformers, f"get_{schedule}_schedule_with_warmup")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = ref(opt, num_warmup_steps=3, num_training_steps=20)
    hf_lrs = []
    for _ in range(21):
        hf_lrs.append(opt.param_groups[0]["lr"])
        opt.step(), hf.step()
    ours = lr_factor(schedule, 3, 20)
    assert [ours(s) for s in range(3, 21)] == pytest.approx(hf_lrs[3:], abs=1e-12)
    assert [ours(s) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert lr_factor(schedule, 0, 10, 0.1)(10) == pytest.approx(0.1)
    assert lr_factor("constant", 2, 10)(9) == 1.0
    base = TrainConfig(steps=10, lr_schedule=schedule)
    assert config_fingerprint(base) != config_fingerprint(base.model_copy(update={"steps": 20}))
    assert config_fingerprint(TrainConfig(steps=10)) == config_fingerprint(TrainConfig(steps=20))
    s = train(TrainConfig(mixture=str(mixture), output=str(tmp_path / "t"), steps=6, batch_size=4, log_every=1,
                          tensorboard=False, model=ModelSpec(preset="t5-0.5m"), lr=0.01, lr_schedule=schedule,
                          warmup_steps=2), progress=False).summary
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    f = lr_factor(schedule, 2, 6)
    assert lrs == pytest.approx([0.01 * f(i) for i in range(6)]) and s["steps"] == 6
