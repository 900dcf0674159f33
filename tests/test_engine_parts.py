"""The engine's parts alone: batch planning, next-token choice, stop strings, lm-eval's pair encoding."""
import torch

from flanlab.evaluate.decoding import cut_at_stop, next_token, sample_generators
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


def test_next_token_greedy_top_k_and_seeded_samples():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9])
    g = torch.Generator().manual_seed(0)
    assert next_token(logits, GenRequest("p"), g) == 1  # temperature 0: argmax
    assert {next_token(logits, GenRequest("p", temperature=1.0, top_k=1), g) for _ in range(20)} == {1}
    two = {next_token(logits, GenRequest("p", temperature=1.0, top_k=2), g) for _ in range(200)}
    assert two == {1, 3}  # top-k=2 keeps exactly the two best
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
