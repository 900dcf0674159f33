"""Packed batches and per-segment attention (flanlab/models/packed.py, segattn.py, train/packing.py): a packed batch
gives each example the loss and gradients it has alone, for T5, Llama and Gemma 3 (sliding window) layouts."""
import pytest
import torch

from flanlab.models.build import ModelSpec, build_model
from flanlab.models import hf_compat, packed as packed_forward, segattn
from flanlab.models.packed import IGNORE, Tokenized, collate, forward_logits, loss_sum
from flanlab.train.packing import pack, tokenize_pair
from flanlab.models.tokenizer import ByteTokenizer

TEXTS = [("What is 12 plus 7?", "19"), ("Reverse the word cat.", "tac"), ("Sort: 3 1 2\n\nOPTIONS:\n- 1 2 3\n- 3 2 1", "1 2 3"),
         ("Is 7 even or odd? Let's think step by step.", "7 is odd. So the answer is odd."), ("x", "y"), ("longer input " * 5, "ok")]



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
