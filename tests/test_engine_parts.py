"""The engine's parts alone: batch planning, next-token choice, stop strings, lm-eval's pair encoding."""
import torch

from flanlab.evaluate.decoding import cut_at_stop, next_tokens, sample_generators
from flanlab.evaluate.loglik import encode_pair
from flanlab.evaluate.planning import Planner
from flanlab.evaluate.requests import GenRequest


def test_length_batches_respect_every_limit_and_cover_each_row_once():
    lengths = [100, 90, 80, 40, 39, 38, 10, 9, 8, 7, 6, 5]
    mult = [1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    p = Planner(batch_tokens=250, max_batch_rows=4, min_fill=0.5)
    batches = list(p.batches(lengths, mult))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width, rows = max(lengths[i] for i in b), sum(mult[i] for i in b)
        assert width * rows <= 250 or len(b) == 1
        assert rows <= 4 or len(b) == 1
        assert all(lengths[i] >= 0.5 * width for i in b)  # padding bounded by min_fill
    assert [0, 1, 2] not in batches  # 3 rows of width 100 exceed 250 tokens
    # with room to spare, a row shorter than min_fill of the batch's width still starts a new batch
    assert list(Planner(batch_tokens=10**6, min_fill=0.5).batches([100, 40, 39], [1, 1, 1])) == [[0], [1, 2]]


def test_prefix_batches_share_a_prefix_and_leave_each_row_its_own_tokens():
    shared = list(range(100, 180))
    seqs = {0: shared + [1, 2], 1: shared + [3], 2: shared + [4, 5, 6], 3: [9, 9, 9]}
    p = Planner(batch_tokens=10**6, min_shared_prefix=16)
    out = list(p.prefix_batches(seqs, lambda i: 0, lambda i: 1, keep=lambda i: 2))
    assert sorted(i for _, idx in out for i in idx) == [0, 1, 2, 3]
    for prefix, idx in out:
        for i in idx:
            assert seqs[i][:len(prefix)] == prefix and len(seqs[i]) - len(prefix) >= 2  # keep=2 tokens of its own
    grouped = [(prefix, idx) for prefix, idx in out if prefix]
    assert grouped and all(len(prefix) >= 16 for prefix, _ in grouped)
    assert 3 not in {i for _, idx in grouped for i in idx}  # nothing to share with the others
    off = Planner(batch_tokens=10**6, min_shared_prefix=0)
    assert all(prefix == [] for prefix, _ in off.prefix_batches(seqs, lambda i: 0, lambda i: 1))


def test_next_tokens_greedy_top_k_and_seeded_samples():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9])
    g = torch.Generator().manual_seed(0)

    def one(r):
        return next_tokens(logits[None], [r], [g])[0]
    assert one(GenRequest("p")) == 1  # temperature 0: argmax
    assert {one(GenRequest("p", temperature=1.0, top_k=1)) for _ in range(20)} == {1}
    assert {one(GenRequest("p", temperature=1.0, top_k=2)) for _ in range(200)} == {1, 3}  # exactly the two best
    # rows of different settings in one call; a row's draw comes from its own generator only
    rows = [GenRequest("p"), GenRequest("p", temperature=1.0, top_k=2), GenRequest("p", temperature=1.0)]
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    first = next_tokens(logits.repeat(3, 1), rows, gens)
    again = next_tokens(logits.repeat(3, 1), rows, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    alone = next_tokens(logits[None], rows[2:], [torch.Generator().manual_seed(3)])
    assert first == again and first[0] == 1 and first[1] in (1, 3) and first[2] == alone[0]
    reqs = [GenRequest("p", n=3, temperature=1.0, seed=5)]
    a = [torch.rand(4, generator=x).tolist() for x in sample_generators(reqs)]
    b = [torch.rand(4, generator=x).tolist() for x in sample_generators(reqs)]
    assert a == b and len({tuple(x) for x in a}) == 3  # reproducible, one stream per sample


def test_cut_at_stop_and_lm_eval_pair_encoding():
    assert cut_at_stop("answer A\n\nQ: next", ("\n\n", "Q:")) == "answer A"
    assert cut_at_stop("no stop here", ()) == "no stop here"

    def encode(text, truncate=False):  # one token per character
        return [ord(c) for c in text]
    ctx, cont = encode_pair(encode, "Answer: ", "B")  # the context's trailing space moves to the continuation
    assert ctx == encode("Answer:") and cont == encode(" B")


def test_nucleus_from_candidates_is_the_full_sort_nucleus(monkeypatch):
    from flanlab.evaluate import decoding
    torch.manual_seed(0)
    lg = torch.cat([torch.randn(4, 5000) * s for s in (0.3, 2.0, 9.0)])  # wide nuclei (past the candidates) and peaked
    fast = torch.isfinite(decoding.nucleus(lg, 0.9))
    monkeypatch.setattr(decoding, "NUCLEUS_CANDIDATES", 5000)
    full = torch.isfinite(decoding.nucleus(lg, 0.9))
    assert torch.equal(fast, full) and fast[:4].sum() > 1024 and fast[8:].sum(-1).max() < 20


def test_bf16_engine_runs_forwards_under_autocast_and_caches_apart():
    from flanlab.evaluate.engine import Engine
    from flanlab.models.build import ModelSpec, build_model
    model, tok = build_model(ModelSpec(preset="llama-1m"), seed=0)
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    for precision in ("fp32", "bf16"):
        seen.clear()
        e = Engine(model, tok, fingerprint="m", precision=precision)
        e.generate([GenRequest("Is 7 odd?", max_new_tokens=3)])
        e.loglik([("Is 7 odd? Answer:", [" yes", " no"])])
        assert seen and set(seen) == {precision == "bf16"}
    assert Engine(model, tok, fingerprint="m")._key("gen", 1) != Engine(model, tok, fingerprint="m",
                                                                         precision="bf16")._key("gen", 1)


def test_bf16_engine_computes_logits_in_fp32():
    """bf16 evaluation rounds nothing at the output: its option log-likelihoods stay within bf16's noise in the
    hidden states of fp32's (rounding the logits to bf16 too gave 10x that here, and ties between options on
    gemma-3-270m), and the head is back to its own forward once the engine is done."""
    from flanlab.evaluate.engine import Engine
    from flanlab.models.build import ModelSpec, build_model
    model, tok = build_model(ModelSpec(preset="llama-1m"), seed=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(6.0)  # logits of a real model's scale (|logit| ~ 10-30): bf16's steps 1/16-1/8
    reqs = [(f"Question {i}: is {i} odd? Answer:", [" A", " B", " C", " D", " yes", " no"]) for i in range(30)]
    fp32, bf16 = (torch.tensor(Engine(model, tok, fingerprint="m", precision=p).loglik(reqs)) for p in ("fp32", "bf16"))
    assert bf16.abs().mean() > 20  # the scale where rounding the logits would show
    assert (fp32 - bf16).abs().max() < 0.03
    assert "forward" not in vars(model.lm_head)
