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
from flanlab.models import hf_compat, packed as packed_forward, segattn
from flanlab.models.packed import IGNORE, Tokenized, collate, forward_logits, loss_sum
from flanlab.train.packing import pack, tokenize_pair
from flanlab.models.tokenizer import ByteTokenizer
from flanlab.train.trainer import TrainConfig, train

TEXTS = [("What is 12 plus 7?", "19"), ("Reverse the word cat.", "tac"), ("Sort: 3 1 2\n\nOPTIONS:\n- 1 2 3\n- 3 2 1", "1 2 3"),
         ("Is 7 even or odd? Let's think step by step.", "7 is odd. So the answer is odd."), ("x", "y"), ("longer input " * 5, "ok")]


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "m"
    build_mixture(MixConfig(total_examples=1500, output=str(out)), progress=False)
    return out


def test_byte_tokenizer_matches_byt5():
    from transformers import ByT5Tokenizer
    ref = ByT5Tokenizer(extra_ids=125)
    tok = ByteTokenizer()
    s = "Hello, wörld ✓\n"
    assert tok.encode(s) == ref.encode(s, add_special_tokens=False)
    assert tok.decode(tok.encode(s) + [tok.eos_id]) == s
    assert len(ref) == tok.vocab_size


@pytest.mark.parametrize("segments", [True, False], ids=["per-segment-attention", "dense-masks"])
@pytest.mark.parametrize("preset", ["t5-1m", "llama-1m"])
def test_packed_equals_unpacked(preset, segments):
    model, tok = build_model(ModelSpec(preset=preset), seed=1)
    model.eval()
    ed = model.config.is_encoder_decoder
    exs = [tokenize_pair(tok, i, t, 96, 48, ed) for i, t in TEXTS]
    rows = pack(exs, ed, 96, 48)
    assert len(rows) < len(exs) and max(len(r) for r in rows) >= 3
    with torch.no_grad():
        packed = forward_logits(model, collate(rows, ed), segments)
        single = [forward_logits(model, collate([[e]], ed), segments)[0] for e in exs]
        lp, n_p = loss_sum(model, collate(rows, ed), segments)
        lu, n_u = loss_sum(model, collate([[e] for e in exs], ed), segments)
    assert n_p == n_u == sum(len(e.targets) for e in exs)  # loss only on target tokens
    assert torch.allclose(lp, lu, rtol=1e-5)
    # every target-position logit of every packed segment equals its unpacked counterpart
    b = collate(rows, ed)
    seg_key = "dec_seg" if ed else "seg"
    index = {id(e): i for i, e in enumerate(exs)}
    for r, row in enumerate(rows):
        for s, ex in enumerate(row, 1):
            pos = (b[seg_key][r] == s).nonzero().flatten()
            assert torch.allclose(packed[r, pos], single[index[id(ex)]][: len(pos)], atol=1e-4), (r, s)


@pytest.mark.parametrize("preset", ["t5-1m", "llama-1m"])
def test_unpacked_forward_matches_hf_forward(preset):
    model, tok = build_model(ModelSpec(preset=preset), seed=2)
    model.eval()
    ed = model.config.is_encoder_decoder
    ex = tokenize_pair(tok, *TEXTS[0], 96, 48, ed)
    b = collate([[ex]], ed)
    with torch.no_grad():
        ours = forward_logits(model, b)
        if ed:
            ref = model(input_ids=b["input_ids"], decoder_input_ids=b["decoder_input_ids"]).logits
        else:
            ref = model(input_ids=b["input_ids"]).logits
    assert torch.allclose(ours, ref, atol=1e-4)
    if not ed:  # labels: position p predicts token p+1, only inside the target
        lab = b["labels"][0]
        k = len(ex.inputs)
        m = len(ex.targets)
        assert (lab[: k - 1] == IGNORE).all() and lab[k - 1:k - 1 + m].tolist() == ex.targets and lab[-1] == IGNORE


def _random_examples(n, seed, max_in=200, max_out=90):
    import random
    rng = random.Random(seed)
    # lengths spread from 1 to max so the planner has to form several length buckets
    return [Tokenized([rng.randrange(3, 250) for _ in range(rng.choice([1, 5, 30, 70, max_in - 1]))] + [1],
                      [rng.randrange(3, 250) for _ in range(rng.choice([1, 3, 20, max_out - 1]))] + [1]) for _ in range(n)]


@pytest.mark.parametrize("preset,overrides", [("t5-1m", {}), ("llama-1m", {}), ("llama-1m", {"num_key_value_heads": 2})],
                         ids=["t5", "llama", "llama-grouped-query"])
def test_segment_attention_matches_dense_masks_in_loss_and_gradients(preset, overrides):
    """The per-segment attention (segattn) computes the same loss and the same gradient for every parameter as
    dense attention over whole rows with segment masks."""
    model, tok = build_model(ModelSpec(preset=preset, overrides=overrides), seed=3)
    model.train()  # dropout is 0 in presets; training mode exercises the training path
    ed = model.config.is_encoder_decoder
    rows = pack(_random_examples(40, 7), ed, 256, 128)
    b = collate(rows, ed)
    out = {}
    for seg in (False, True):
        model.zero_grad()
        ls, n = loss_sum(model, b, seg)
        ls.backward()
        out[seg] = (ls.item() / n, {k: p.grad.clone() for k, p in model.named_parameters()})
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-5)
    for k, g in out[False][1].items():  # summed loss: gradients reach ~40, compare relative to each tensor's scale
        assert (out[True][1][k] - g).abs().max() <= 1e-5 * g.abs().max() + 1e-7, k
    key = "enc_seg" if ed else "seg"
    s = packed_forward._flat(b, key, ())[0][key]  # the self-attention of the stream these gradients came from
    segs = segattn.segments(s)
    assert len(segattn.plan(segs, segs, s.shape[1], s.shape[1], 1, causal=not ed).buckets) >= 2  # several buckets


@pytest.mark.parametrize("preset", ["t5-1m", "llama-1m"])
def test_activation_checkpointing_recomputes_blocks_with_the_same_gradients(preset):
    """With activation checkpointing every block runs again in the backward pass (counted with a pre-hook on the
    real module) and must do so under the same per-segment attention: same loss, same gradient for every parameter."""
    from flanlab.train.trainer import enable_activation_checkpointing
    out = {}
    for recompute in (False, True):
        model, tok = build_model(ModelSpec(preset=preset), seed=3)
        if recompute:
            enable_activation_checkpointing(model, {"use_reentrant": False, "context_fn": segattn.recompute_context})
        model.train()
        ed = model.config.is_encoder_decoder
        attn = model.encoder.block[0].layer[0] if ed else model.model.layers[0].self_attn
        calls = []
        attn.register_forward_pre_hook(lambda *a: calls.append(1))
        ls, n = loss_sum(model, collate(pack(_random_examples(30, 5), ed, 256, 128), ed))
        ls.backward()
        out[recompute] = (ls.item(), {k: p.grad.clone() for k, p in model.named_parameters()}, len(calls))
    assert (out[False][2], out[True][2]) == (1, 2)
    assert out[True][0] == out[False][0]
    for k, g in out[False][1].items():
        assert torch.allclose(out[True][1][k], g, rtol=1e-5, atol=1e-7), k


def test_fused_gelu_is_the_same_function():
    from flanlab.models.build import fuse_gelu
    model, tok = build_model(ModelSpec(preset="t5-1m"), seed=4)
    model.eval()
    b = collate(pack(_random_examples(12, 5), True, 256, 128), True)
    with torch.no_grad():
        ref = forward_logits(model, b)
        assert fuse_gelu(model) == 4  # one gated-GELU per block: 2 encoder + 2 decoder
        assert torch.allclose(forward_logits(model, b), ref, atol=1e-5)
    assert fuse_gelu(build_model(ModelSpec(preset="llama-1m"))[0]) == 0  # SiLU models are left alone
    assert "gelu_new" in model.config.to_json_string()  # the saved config is unchanged


def test_segment_plan_covers_every_position_once():
    seg = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 2]])
    segs = segattn.segments(seg)
    assert segs == {(0, 1): (0, 3), (0, 2): (3, 2), (0, 3): (5, 1), (1, 1): (0, 7), (1, 2): (7, 1)}
    real = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]
    for overhead in (0, 10, 10**9):  # one call per segment ... one call for all
        p = segattn.plan(segs, segs, 8, 8, 2, causal=True, overhead=overhead)
        assert p.slots == sum(b.n * b.Sq for b in p.buckets) == len(p.q_idx)
        slot = p.inverse[real]
        assert len(set(slot.tolist())) == len(real) and (slot < p.slots).all()  # every real position has its own slot
        assert p.q_idx[slot].tolist() == real  # ... which gathers that very position
        assert (p.inverse[[6, 7]] == p.slots).all()  # padding reads the zero row
    assert len(segattn.plan(segs, segs, 8, 8, 2, True, overhead=0).buckets) > len(segattn.plan(segs, segs, 8, 8, 2, True, overhead=10**9).buckets) == 1
    # key padding and causality inside a bucket: the 3-token segment padded to 7 sees only its own past
    p = segattn.plan(segs, segs, 8, 8, 2, causal=True, overhead=10**9)
    bk = p.buckets[0]
    row = (p.q_idx.view(bk.n, bk.Sq)[:, 0] == 0).nonzero().item()  # the slot holding segment (0, 1)
    allowed = bk.mask[row, 0] == 0
    assert allowed[:3, :3].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert not allowed[:, 3:].any()


@pytest.mark.parametrize("kernel", ["auto", "matmul"])
def test_sliding_window_inside_segments_matches_a_reference_and_padding_rows_stay_finite(kernel):
    """Gemma3's local layers on the per-segment path: a query sees its own segment's keys fewer than `window`
    positions back. One bucket holds a 12- and a 3-token segment (padded to 12): the short one's padding query rows
    keep no key in their window; outputs match a per-segment reference and the gradients stay finite."""
    seg = torch.tensor([[1] * 12 + [2] * 3])
    segs = segattn.segments(seg)
    p = segattn.plan(segs, segs, 15, 15, 1, causal=True, overhead=10**9)
    assert len(p.buckets) == 1 and p.buckets[0].Sq == 12
    p.kernel = kernel
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 15, 8, requires_grad=True) for _ in range(3))
    module = torch.nn.Module().eval()
    with segattn.packed_attention(torch.nn.Module(), {"self": p}):
        out, _ = segattn.attention(module, q, k, v, None, scaling=8 ** -0.5, sliding_window=4)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    ref = []
    for a, b in ((0, 12), (12, 15)):
        i = torch.arange(b - a)
        allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 4)
        w = ((q[0, :, a:b] @ k[0, :, a:b].transpose(-1, -2)) * 8 ** -0.5).masked_fill(~allowed, float("-inf"))
        ref.append((w.softmax(-1) @ v[0, :, a:b]).transpose(0, 1))
    torch.testing.assert_close(out[0], torch.cat(ref), atol=1e-5, rtol=1e-5)


def test_bucket_planner_finds_the_cheapest_cut():
    """The DP's cut of a length-ordered segment list costs exactly the minimum over all contiguous cuts."""
    import itertools
    import random
    rng = random.Random(0)
    for _ in range(40):
        n = rng.randrange(1, 9)
        q = {(0, i): (0, rng.randrange(1, 200)) for i in range(n)}
        k = {(0, i): (0, rng.randrange(1, 200)) for i in range(n)}
        keys = sorted(q, key=lambda x: (k[x][1], q[x][1]))
        call_cost = rng.choice([0, 50, 4096, 10**6])

        def cost(groups):
            return sum(len(g) * max(q[x][1] for x in g) * max(k[x][1] for x in g) + call_cost for g in groups)
        brute = min(cost([keys[a:b] for a, b in zip((0,) + cuts, cuts + (n,))])
                    for r in range(n) for cuts in itertools.combinations(range(1, n), r))
        c, groups = segattn._groups(keys, q, k, call_cost)
        assert [x for g in groups for x in g] == keys and c == cost(groups) == brute


def test_packed_attention_is_scoped_to_the_block():
    model, _ = build_model(ModelSpec(preset="t5-0.5m"), seed=0)
    before = {id(c): c._attn_implementation for c in hf_compat.configs_with_attention(model)}
    with pytest.raises(RuntimeError):
        with segattn.packed_attention(model, {}):
            assert all(c._attn_implementation == segattn.NAME for c in hf_compat.configs_with_attention(model))
            raise RuntimeError("boom")
    assert {id(c): c._attn_implementation for c in hf_compat.configs_with_attention(model)} == before
    assert segattn._LAYOUT.get() is None  # outside the block attention falls back to SDPA (used by generate)


def test_training_reduces_loss_and_writes_hf_checkpoint(mixture, tmp_path):
    from transformers import AutoModelForSeq2SeqLM
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "t"), steps=30, batch_size=8, log_every=10, save_every=15,
                      lr=3e-3)
    s = train(cfg, progress=False)
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


@pytest.mark.parametrize("preset", ["t5-1m", "llama-1m"])
def test_attention_kernel_from_config_reaches_every_bucket(preset, monkeypatch):
    """TrainConfig.attention_kernel picks the per-segment kernel: "matmul" never calls the fused SDPA kernel,
    "auto" does, and both give the same loss."""
    model, tok = build_model(ModelSpec(preset=preset), seed=2)
    model.eval()
    ed = model.config.is_encoder_decoder
    b = collate(pack(_random_examples(20, 4), ed, 256, 128), ed)
    real, calls = torch.nn.functional.scaled_dot_product_attention, []
    monkeypatch.setattr(segattn.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    loss = {}
    with torch.no_grad():
        for kernel in ("matmul", "auto"):
            calls.clear()
            ls, n = loss_sum(packed_forward.PackedForward(model, True, kernel), b)
            loss[kernel] = (ls.item() / n, len(calls))
    assert loss["matmul"][1] == 0 and loss["auto"][1] > 0
    assert loss["matmul"][0] == pytest.approx(loss["auto"][0], rel=1e-5)
    with pytest.raises(ValueError, match="attention kernel 'flash'"):
        segattn.layout_for({k: b[k] for k in ("seg", "enc_seg", "dec_seg") if k in b}, kernel="flash")


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32_and_says_so(mixture, tmp_path, monkeypatch):
    from flanlab.models import device
    monkeypatch.delenv("FLANLAB_EMULATED_BF16", raising=False)
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)
    said = []
    cfg = TrainConfig(mixture=str(mixture), output=str(tmp_path / "r"), steps=1, batch_size=2, precision="bf16",
                      model=ModelSpec(preset="t5-1m"), tensorboard=False, device="cpu")
    assert train(cfg, progress=False, log=said.append)["precision"] == "fp32"
    assert any("no native bfloat16" in m and "fp32" in m for m in said)
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)  # a bf16 CPU trains in bf16 as asked
    cfg = cfg.model_copy(update={"output": str(tmp_path / "r2")})
    assert train(cfg, progress=False, log=said.append)["precision"] == "bf16"


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
    summary = train(cfg.model_copy(update={"output": str(tmp_path / "n"), "steps": 1}), progress=False)
    assert (summary["precision"], summary["frozen_weights"]) == ("fp32", "fp32")


def _tiny_gemma3(sliding_window: int = 4):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=sliding_window,
                           layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
                           max_position_embeddings=256, final_logit_softcapping=5.0, attn_implementation="sdpa")
    return Gemma3ForCausalLM(cfg)


@pytest.mark.parametrize("segment_attention", [True, False])
def test_packed_gemma3_with_sliding_window_layers_equals_examples_one_by_one(segment_attention):
    """An architecture that is neither T5 nor Llama: Gemma3's sliding-window and global layers, final logit
    soft-capping. The packed loss (LM head on targets only; per-segment attention with the window applied inside
    each segment, or dense masks, one per layer type) and its gradients equal the sum over the examples run alone
    through the model's own forward."""
    from flanlab.models import segattn
    model = _tiny_gemma3()
    assert segattn.supported(model)
    exs = [Tokenized(list(range(3 + i, 10 + 2 * i)), [40 + i, 41, 42, 2]) for i in range(5)]  # 11-17 tokens > window
    rows = pack(exs, False, 64, 64)
    assert max(len(r) for r in rows) >= 2
    model.zero_grad()
    packed, n = loss_sum(model, collate(rows, False), segment_attention=segment_attention)
    packed.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    alone = 0.0
    for e in exs:
        logits = model(input_ids=torch.tensor([e.inputs + e.targets])).logits[0]
        k = len(e.inputs)
        alone = alone + torch.nn.functional.cross_entropy(logits[k - 1:-1], torch.tensor(e.targets), reduction="sum")
    alone.backward()
    assert n == sum(len(e.targets) for e in exs)
    assert packed.item() == pytest.approx(alone.item(), rel=1e-5)
    for k, p in model.named_parameters():
        assert (p.grad - grads[k]).abs().max() <= 1e-5 * p.grad.abs().max() + 1e-7, k


def test_chunked_target_loss_equals_the_whole_in_loss_and_gradients(monkeypatch):
    """Above CHUNKED_LOSS_ELEMENTS logits the loss runs in chunks of target positions (logits recomputed in the
    backward pass): the same loss and gradients as one piece."""
    model = _tiny_gemma3()
    exs = [Tokenized(list(range(3 + i, 10 + 2 * i)), [40 + i, 41, 42, 2]) for i in range(5)]
    b = collate(pack(exs, False, 64, 64), False)
    out = {}
    for limit in (10**9, 300 * 3):  # one piece; chunks of 3 target positions (20 targets)
        monkeypatch.setattr(packed_forward, "CHUNKED_LOSS_ELEMENTS", limit)
        calls = []
        monkeypatch.setattr(packed_forward, "lm_head", lambda base, h, real=packed_forward.lm_head:
                            calls.append(h.shape[0]) or real(base, h))
        model.zero_grad()
        ls, _ = loss_sum(model, b)
        ls.backward()
        out[limit] = (ls.item(), {k: p.grad.clone() for k, p in model.named_parameters()}, calls)
    (l1, g1, c1), (l2, g2, c2) = out[10**9], out[900]
    assert c1 == [20] and max(c2) == 3 and sum(c2) >= 2 * 20  # chunks, each recomputed in backward
    assert l2 == pytest.approx(l1, rel=1e-6)
    for k in g1:
        assert (g2[k] - g1[k]).abs().max() <= 1e-5 * g1[k].abs().max() + 1e-7, k


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
                          warmup_steps=2), progress=False)
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    f = lr_factor(schedule, 2, 6)
    assert lrs == pytest.approx([0.01 * f(i) for i in range(6)]) and s["steps"] == 6
