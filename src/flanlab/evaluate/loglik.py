"""Log-likelihood scoring: the summed log-probability of each continuation given its context. Decoder-only pairs are
encoded as lm-evaluation-harness encodes them (context and continuation tokenized together, trailing context
whitespace moved into the continuation), so rankings agree with it."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from .kv_cache import PrefixLM
from .planning import Planner
from .requests import Unit


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-evaluation-harness's split for decoder-only models: trailing whitespace of the context moves into the
    continuation; the two are then tokenized together, and the continuation is what follows the context's tokens."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


def encode_pairs(encode_many: Callable[[list[str]], list[list[int]]], pairs: list[tuple[str, str]]
                 ) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) of each pair, as lm-evaluation-harness encodes them; `encode_many`
    gives contexts' tokens, untruncated (truncating each separately would cut the continuation off a long context:
    the row built from the pair is cut to the longest prompt instead). One call for all: batch tokenization."""
    split = [split_pair(c, o) for c, o in pairs]
    contexts = list(dict.fromkeys(c for c, _ in split))
    encoded = encode_many(contexts + [c + o for c, o in split])
    ctx = dict(zip(contexts, encoded[:len(contexts)]))
    return [(ctx[c], whole[len(ctx[c]):]) for (c, _), whole in zip(split, encoded[len(contexts):])]


def encode_pair(encode: Callable[..., list[int]], context: str, continuation: str) -> tuple[list[int], list[int]]:
    """One pair (`encode(text, truncate=False)` gives a context's tokens); see encode_pairs."""
    return encode_pairs(lambda texts: [encode(t, truncate=False) for t in texts], [(context, continuation)])[0]


class _Rows:
    """Every (request, option) is scored on a row: inputs = context + continuation minus its last token, the
    continuation's tokens scored at the row's end. Options with equal rows (one-token continuations of one context,
    as MMLU's " A".." D") share the row, so it runs once."""

    def __init__(self, prompt_options, todo: list[int], encode_many: Callable[[list[str]], list[list[int]]],
                 max_len: int):
        rows: dict[tuple[int, ...], int] = {}
        self.needs: dict[int, set[tuple[int, ...]]] = {}  # row -> continuations scored on it
        self.asked: dict[int, list[tuple[int, tuple[int, ...]]]] = {}  # request -> [(row, continuation)] per option
        encoded = iter(encode_pairs(encode_many, [(prompt_options[i][0], o) for i in todo
                                                  for o in prompt_options[i][1]]))
        for i in todo:
            for o in prompt_options[i][1]:
                c, cont = next(encoded)
                if not cont:
                    raise ValueError(f"continuation {o!r} adds no token to its context")
                seq = (c + cont)[-(max_len + 1):]
                r = rows.setdefault(tuple(seq[:-1]), len(rows))
                self.needs.setdefault(r, set()).add(tuple(cont))
                self.asked.setdefault(i, []).append((r, tuple(cont)))
        self.ids = {r: list(key) for key, r in rows.items()}
        self.scores: dict[tuple[int, tuple[int, ...]], float] = {}
        self.by_row: dict[int, list[int]] = {}  # row -> requests with an option on it
        for i in todo:
            for r in dict.fromkeys(r for r, _ in self.asked[i]):
                self.by_row.setdefault(r, []).append(i)
        self.left = {i: len(set(self.asked[i])) for i in todo}  # request -> its (row, continuation)s not yet scored

    def score(self, lm: PrefixLM, prefix: list[int], idx: list[int]) -> dict:
        """Scores of every continuation on rows `idx` (which share `prefix`), from one forward."""
        k = max(len(c) for r in idx for c in self.needs[r])
        out, _, _ = lm.forward(prefix, [self.ids[r][len(prefix):] for r in idx], logits_to_keep=k)
        logp = torch.log_softmax(out.logits[:, -k:, :].float(), -1)
        part = {}
        for b, r in enumerate(idx):
            for cont in self.needs[r]:
                ids = torch.tensor(cont, device=logp.device)[:, None]
                part[(r, cont)] = float(logp[b, k - len(cont):].gather(-1, ids).sum())
        return part

    def finish(self, part: dict) -> list[tuple[int, list[float]]]:
        """The requests whose every option is now scored (only those with an option in `part` are looked at)."""
        done = []
        for x in part:
            if x in self.scores:
                continue
            self.scores[x] = part[x]
            for i in self.by_row[x[0]]:
                if x in self.asked[i]:
                    self.left[i] -= 1
                    if self.left[i] == 0:
                        done.append(i)
        return [(i, [self.scores[x] for x in self.asked[i]]) for i in done]


def decoder_units(prompt_options, todo: list[int], encode_many: Callable[[list[str]], list[list[int]]], max_len: int,
                  lm: PrefixLM, planner: Planner) -> Iterator[Unit]:
    """Units scoring the requests `todo` on a decoder-only model, rows sharing a prefix batched together;
    `encode_many` gives untruncated context tokens of many texts."""
    rows = _Rows(prompt_options, todo, encode_many, max_len)
    # a continuation's tokens are scored from the row's last positions, which must not fall in a shared prefix
    longest = {r: max(len(c) for c in cs) for r, cs in rows.needs.items()}
    for prefix, idx in planner.prefix_batches(rows.ids, lambda r: 0, lambda r: 1, keep=lambda r: longest[r]):
        yield Unit(lambda prefix=prefix, idx=idx: rows.score(lm, prefix, idx), rows.finish)


@torch.no_grad()
def encoder_decoder_scores(model, tok, prompts: list[list[int]], options: list[list[list[int]]], stats: dict
                           ) -> list[list[float]]:
    """T5: each option is the decoder target (followed by eos) of its prompt; all options of a batch in one forward."""
    from ..models.packed import Tokenized, collate, forward_logits
    rows = [[Tokenized(p, o)] for p, os_ in zip(prompts, options) for o in os_]
    batch = collate(rows, True, tok.pad_id, getattr(model.config, "decoder_start_token_id", 0) or 0)
    logp = torch.log_softmax(forward_logits(model, batch).float(), -1)
    labels = batch["labels"].to(logp.device)
    tok_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (labels != -100)
    flat = tok_lp.sum(-1).tolist()
    stats["forward_calls"] += 1
    res, k = [], 0
    for os_ in options:
        res.append(flat[k:k + len(os_)])
        k += len(os_)
    return res
