"""Decoding a batch of generation requests: one prefill per prompt (T5: one encoder pass; decoder-only: one prefill
after the shared prefix), its KV cache repeated for the prompt's n samples, then token by token - greedy or sampled
(temperature, top-k, nucleus), each sample with its own seeded generator - with stop strings checked in decoded
text after every token (any tokenizer) and finished rows leaving the batch and its KV cache."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..models.build import base_model
from .kv_cache import PrefixLM, out_cache
from .requests import GenRequest


# nucleus: the candidates looked at first; a row whose nucleus is not within them is sorted in full
NUCLEUS_CANDIDATES = 1024


def nucleus(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits [..., V] with every token outside the nucleus masked: keep the most probable tokens until their
    probability reaches p (Holtzman et al. 2020; the first token always stays). The top NUCLEUS_CANDIDATES tokens
    decide it for the rows whose nucleus lies among them (a 49k-vocabulary sort per row per step is half the cost of
    sampling from a 135M model); the other rows are sorted in full - the same set either way."""
    flat = logits.reshape(-1, logits.shape[-1])
    probs = torch.softmax(flat, -1)
    k = min(NUCLEUS_CANDIDATES, flat.shape[-1])
    top, idx = probs.topk(k, dim=-1)
    outside_top = top.cumsum(-1) - top >= p  # the mass before a token already reaches p
    outside = torch.ones_like(flat, dtype=torch.bool).scatter(-1, idx, outside_top)
    wide = ~outside_top[:, -1]  # the nucleus may reach past the candidates: decide it over the whole vocabulary
    if wide.any():
        sp, order = probs[wide].sort(descending=True)
        out_sorted = sp.cumsum(-1) - sp >= p
        outside[wide] = out_sorted.scatter(-1, order, out_sorted)
    return flat.masked_fill(outside, float("-inf")).reshape(logits.shape)


def next_tokens(logits: torch.Tensor, reqs: list[GenRequest], gens: list[torch.Generator]) -> list[int]:
    """The next token of every row from its logits [rows, V]: argmax at temperature 0, else a sample - rows with the
    same settings in one batched pass (temperature, top-k, nucleus), each row drawing its uniform number from its own
    seeded generator and inverting its distribution's CDF (a request's samples do not depend on its batch)."""
    out = logits.argmax(-1).tolist()
    groups: dict[tuple, list[int]] = {}
    for j, r in enumerate(reqs):
        if r.temperature > 0:
            groups.setdefault((r.temperature, r.top_k, r.top_p), []).append(j)
    for (temperature, top_k, top_p), rows in groups.items():
        lg = logits[rows] / temperature
        if top_k > 0:
            kth = torch.topk(lg, min(top_k, lg.shape[-1]), dim=-1).values[:, -1:]
            lg = lg.masked_fill(lg < kth, float("-inf"))
        if top_p < 1.0:
            lg = nucleus(lg, top_p)
        cdf = torch.softmax(lg, -1).double().cumsum(-1)
        # u in (0, 1]: the first token whose CDF reaches u * total has a positive probability
        u = torch.cat([1.0 - torch.rand(1, generator=gens[j], dtype=torch.float64) for j in rows])
        picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1).clamp(max=lg.shape[-1] - 1)
        for j, t in zip(rows, picked.tolist()):
            out[j] = t
    return out


def sample_generators(reqs: list[GenRequest]) -> list[torch.Generator]:
    """One generator per sample, seeded by (request seed, sample index, prompt): a request's samples are the same
    whatever batch it lands in."""
    gens = []
    for r in reqs:
        for s in range(r.n):
            g = torch.Generator(device="cpu")
            g.manual_seed(int(hashlib.sha256(f"{r.seed}/{s}/{r.prompt}".encode()).hexdigest()[:12], 16))
            gens.append(g)
    return gens


@dataclass
class Rows:
    """The rows still decoding (one per sample) and what the next forward needs for them."""
    logits: torch.Tensor  # [rows, V] next-token logits
    cache: object  # the model's KV cache of these rows
    att: torch.Tensor  # attention mask (decoder-only: prefix + prompt + generated; T5: the encoder's)
    pos: torch.Tensor | None = None  # decoder-only: position id of each row's last token
    enc: torch.Tensor | None = None  # T5: encoder output per row

    def select(self, keep: list[int]) -> None:
        """Keep only these rows (finished ones leave the batch and its KV cache)."""
        sel = torch.tensor(keep, device=self.att.device)
        self.cache.batch_select_indices(sel)
        self.att = self.att[sel]
        if self.enc is not None:
            self.enc = self.enc[sel]
        else:
            self.pos = self.pos[sel]


@torch.no_grad()
def prefill_encoder_decoder(model, pad_id: int, prompts: list[list[int]], rep: torch.Tensor, stats: dict) -> Rows:
    """The encoder once per prompt (right-padded), its output repeated per sample, and the first decoder step."""
    dev = rep.device
    B, L = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, L), pad_id, dtype=torch.long, device=dev)
    att = torch.zeros((B, L), dtype=torch.long, device=dev)
    for b, p in enumerate(prompts):
        ids[b, :len(p)] = torch.tensor(p)
        att[b, :len(p)] = 1
    stats["prompt_tokens"] += int(att.sum())
    stats["forward_calls"] += 1
    enc = base_model(model).encoder(input_ids=ids, attention_mask=att).last_hidden_state.repeat_interleave(rep, 0)
    att = att.repeat_interleave(rep, 0)
    cur = torch.full((enc.size(0), 1), model.config.decoder_start_token_id, dtype=torch.long, device=dev)
    out = model(encoder_outputs=(enc,), attention_mask=att, decoder_input_ids=cur, use_cache=True)
    return Rows(out.logits[:, -1, :].float(), out_cache(out), att, enc=enc)


@torch.no_grad()
def prefill_decoder(lm: PrefixLM, prefix: list[int], prompts: list[list[int]], rep: torch.Tensor) -> Rows:
    """One prefill per prompt after the shared prefix; its KV cache rows repeated per sample."""
    out, att, pos = lm.forward(list(prefix), prompts)
    cache = out_cache(out)
    cache.batch_select_indices(torch.arange(len(prompts), device=rep.device).repeat_interleave(rep))
    return Rows(out.logits[:, -1, :].float().repeat_interleave(rep, 0), cache, att.repeat_interleave(rep, 0),
                pos=pos[:, -1:].repeat_interleave(rep, 0))


@torch.no_grad()
def advance(model, kw: str, rows: Rows, tokens: list[int]) -> None:
    """One decoding step: feed each live row its new token, keep the new logits and cache."""
    step = torch.tensor([[t] for t in tokens], dtype=torch.long, device=rows.att.device)
    if rows.enc is not None:
        out = model(encoder_outputs=(rows.enc,), attention_mask=rows.att, decoder_input_ids=step, use_cache=True,
                    **{kw: rows.cache})
    else:
        rows.att = torch.cat([rows.att, rows.att.new_ones((len(tokens), 1))], 1)
        rows.pos = rows.pos + 1
        out = model(input_ids=step, attention_mask=rows.att, position_ids=rows.pos, use_cache=True, **{kw: rows.cache})
    rows.cache, rows.logits = out_cache(out), out.logits[:, -1, :].float()


def decode(model, tok, kw: str, rows: Rows, reqs: list[GenRequest], stats: dict) -> list[list[int]]:
    """Token ids of every row (request by request, n rows each) until eos, its max_new_tokens or a stop string."""
    row_req = [r for r in reqs for _ in range(r.n)]
    gens = sample_generators(reqs)
    out_ids: list[list[int]] = [[] for _ in row_req]
    live = list(range(len(row_req)))  # rows still decoding
    for _ in range(max(r.max_new_tokens for r in row_req)):
        nxt = dict(zip(live, next_tokens(rows.logits, [row_req[i] for i in live], [gens[i] for i in live])))
        done = set()
        for i in live:
            r = row_req[i]
            if nxt[i] == tok.eos_id:
                done.add(i)
                continue
            out_ids[i].append(nxt[i])
            stats["generated_tokens"] += 1
            if len(out_ids[i]) >= r.max_new_tokens or stopped(tok, out_ids[i], r.stop):
                done.add(i)
        keep = [j for j, i in enumerate(live) if i not in done]
        if not keep:
            break
        if len(keep) < len(live):
            rows.select(keep)
            live = [live[j] for j in keep]
        advance(model, kw, rows, [nxt[i] for i in live])
    return out_ids


def stopped(tok, ids: list[int], stop: tuple[str, ...]) -> bool:
    return bool(stop) and any(s in tok.decode(ids) for s in stop)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text before the first stop string (as lm-eval cuts)."""
    for st in stop:
        text = text.split(st)[0]
    return text
