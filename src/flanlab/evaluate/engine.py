"""The model side of evaluation: it answers requests and knows nothing of benchmarks.

- generate: greedy or sampled continuations (temperature, top-k), cut at stop strings that are checked in
  decoded text after every token (any tokenizer); k samples of a prompt share one encoder pass (T5) or one
  prefill whose KV cache is repeated k times (decoder-only);
- loglik: summed log-probabilities of continuations, encoded as lm-evaluation-harness encodes them for
  decoder-only models (context and continuation tokenized together, trailing context whitespace moved into
  the continuation), so rankings agree with it;
- decoder-only prefix sharing: requests whose token sequences share a long prefix (a few-shot prompt's
  exemplars, shared by every question of a task) get that prefix's KV cache computed once, and only their
  own suffixes run through the model;
- every answered request is appended to an on-disk cache keyed by (model fingerprint, request), so an
  interrupted evaluation resumes where it stopped;
- data-parallel (`flanlab eval --nproc N`): the batches one process would run are planned the same way in every
  process and dealt out round-robin; each round's results are gathered, so every process holds all answers
  (the same batches computed by the same code: the same answers as one process), and process 0 alone writes
  the cache.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..models.build import base_model
from ..models.device import Processes


@dataclass(frozen=True)
class GenRequest:
    prompt: str  # the whole context the model continues
    n: int = 1
    temperature: float = 0.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens whose probabilities sum to top_p (last: the
    # fields before it keep their positions)


def _payload(r: GenRequest) -> dict:
    """A request as its cache key sees it; top_p appears only when set, so caches from before it existed still hit."""
    d = asdict(r)
    if d["top_p"] == 1.0:
        del d["top_p"]
    return d


def nucleus(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits with every token outside the nucleus masked: keep the most probable tokens until their probability
    reaches p (Holtzman et al. 2020; the first token always stays)."""
    probs, order = torch.softmax(logits, -1).sort(descending=True)
    outside = probs.cumsum(-1) - probs >= p  # the mass before a token already reaches p
    return logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))


def model_fingerprint(path: str | Path | None, model=None) -> str:
    h = hashlib.sha256()
    if path is not None and Path(path).is_dir():
        for f in sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin")):
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
        return h.hexdigest()[:16]
    if model is not None:
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
    return str(path)


class DiskCache:
    def __init__(self, path: str | Path | None, writer: bool = True):
        """`writer`: this process appends answers (under data-parallel evaluation only process 0 does; the
        others read the same file at start and keep new answers in memory)."""
        self.path = Path(path) if path else None
        self.writer = writer
        self.data: dict[str, object] = {}
        self.hits = 0
        self.skipped = 0  # unreadable lines (cut by a kill) - said once, below
        if self.path and self.path.is_file():
            raw = self.path.read_bytes()
            # a record cut by a kill: the writer drops it so appends start on a fresh line
            if writer and raw and not raw.endswith(b"\n"):
                with self.path.open("r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self.data[rec["k"]] = rec["v"]
                    except (json.JSONDecodeError, KeyError, TypeError):  # a line cut by a kill: its request reruns
                        self.skipped += 1
            if self.skipped and writer:
                warnings.warn(f"{self.path}: {self.skipped} unreadable cache line(s) skipped; their requests run again",
                              stacklevel=2)
        self._fh = None

    def get(self, key: str):
        v = self.data.get(key)
        if v is not None:
            self.hits += 1
        return v

    def put_many(self, items: list[tuple[str, object]]) -> None:
        if not items:
            return
        for k, v in items:
            self.data[k] = v
        if self.path and self.writer:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write("".join(json.dumps({"k": k, "v": v}) + "\n" for k, v in items))
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None


def _cache_kw(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix_groups(seqs: list[list[int]], min_prefix: int, min_saving: int = 1,
                         keep: list[int] | None = None) -> list[tuple[int, list[int]]]:
    """Groups of sequence indices that share a token prefix of at least `min_prefix` tokens, as
    (prefix length, indices). The prefix leaves every member at least keep[i] (default 1) tokens of its own:
    the positions whose outputs are read must run in the member's own rows.
    A group is kept when sharing saves at least `min_saving` prefix tokens ((members - 1) x prefix); the rest
    end up together in one group with prefix 0 (batched together rather than in many small batches)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    groups: list[tuple[int, list[int]]] = []
    loose: list[int] = []
    run, run_lcp = order[:1], None

    def close():
        if len(run) > 1:
            plen = min(run_lcp, min(len(seqs[i]) - (keep[i] if keep else 1) for i in run))
            if (len(run) - 1) * plen >= min_saving:
                groups.append((plen, list(run)))
                return
        loose.extend(run)
    for prev, i in zip(order, order[1:]):
        lcp = _lcp(seqs[prev], seqs[i])
        joined = lcp if run_lcp is None else min(run_lcp, lcp)
        if joined >= min_prefix:
            run.append(i)
            run_lcp = joined
        else:
            close()
            run, run_lcp = [i], None
    if run:
        close()
    fixed = [(p, g) for p, g in groups if p >= min_prefix]
    loose += [i for p, g in groups if p < min_prefix for i in g]
    if loose:
        fixed.append((0, sorted(loose)))
    return fixed


@dataclass
class Unit:
    """One batch of model work. `compute` runs in one process and returns a partial result; `finish` runs in
    every process, in plan order, and turns it into the requests it completes, [(request index, answer)]."""
    compute: Callable[[], object]
    finish: Callable[[object], list[tuple[int, object]]] = lambda part: part


class Engine:
    def __init__(self, model, tok, *, fingerprint: str = "", cache_path: str | Path | None = None,
                 batch_tokens: int = 16384, max_prompt_len: int = 2048, min_shared_prefix: int = 64,
                 max_batch_rows: int = 32, min_fill: float = 0.75, progress: Callable[[int, int], None] | None = None,
                 processes: Processes | None = None):
        self.model = model.eval()
        self.tok = tok
        self.encoder_decoder = bool(base_model(model).config.is_encoder_decoder)
        self.fp = fingerprint
        self.procs = processes or Processes()
        self.cache = DiskCache(cache_path, writer=self.procs.rank == 0)
        self.batch_tokens = batch_tokens  # tokens a batch computes (rows x width; a shared prefix is computed once)
        self.max_batch_rows = max_batch_rows  # rows of one batch (each holds its own KV cache)
        self.min_fill = min_fill  # rows at least this share of the batch's width (bounds padding)
        self.max_prompt_len = max_prompt_len
        self.min_shared_prefix = min_shared_prefix  # 0 turns prefix sharing off
        self.progress = progress
        self.kw = _cache_kw(model)
        self.keep_kw = "logits_to_keep" in inspect.signature(base_model(model).forward).parameters
        self.stats = {"generated_tokens": 0, "prompt_tokens": 0, "forward_calls": 0, "shared_prefix_tokens": 0}

    # ------------------------------------------------------------------ helpers
    def _key(self, kind: str, payload) -> str:
        return hashlib.sha256(json.dumps([self.fp, kind, payload], sort_keys=True).encode()).hexdigest()

    def encode_context(self, text: str, truncate: bool = True) -> list[int]:
        """Prompt tokens; `truncate`: only the last max_prompt_len (the exemplars furthest from the question go)."""
        n = self.max_prompt_len if truncate else 1 << 62
        if self.encoder_decoder:
            return self.tok.encode(text)[-(n - 1):] + [self.tok.eos_id]
        return (self.tok.bos + self.tok.encode(text))[-n:]

    def _device(self):
        return next(self.model.parameters()).device

    def _batches(self, lengths: list[int], mult: list[int]) -> Iterator[list[int]]:
        """Positions into `lengths`, longest first, in batches of at most batch_tokens (width x rows) and
        max_batch_rows rows; a row shorter than min_fill of the batch's width starts a new batch (few-shot questions
        of one subject vary 5x in length: padding them all to the longest would double the compute)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch, width = [], 0
        for i in order:
            w = max(width, lengths[i])
            rows = sum(mult[j] for j in batch) + mult[i]
            if batch and (w * rows > self.batch_tokens or rows > self.max_batch_rows
                          or lengths[i] < self.min_fill * w):
                yield batch
                batch, w = [], lengths[i]
            batch.append(i)
            width = w
        if batch:
            yield batch

    def _cached(self, keys: list[str], plan: Callable[[list[int]], Iterator[Unit]]) -> list:
        """Answer each key from the disk cache; plan(misses) gives the units of work, which processes take in
        rounds (unit k of a round runs in process k); each round's answers reach every process and are appended
        to the cache as they come."""
        results: list = [self.cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        done, total, t0 = len(keys) - len(todo), len(keys), time.time()
        if self.progress:
            self.progress(done, total)
        units = list(plan(todo)) if todo else []
        world, rank = self.procs.world, self.procs.rank
        for start in range(0, len(units), world):
            round_ = units[start:start + world]
            parts = self.procs.gather(round_[rank].compute() if rank < len(round_) else None)
            for unit, part in zip(round_, parts):
                chunk = unit.finish(part)
                for i, out in chunk:
                    results[i] = out
                self.cache.put_many([(keys[i], results[i]) for i, _ in chunk])
                done += len(chunk)
                if self.progress:
                    self.progress(done, total)
        self.stats["seconds"] = self.stats.get("seconds", 0.0) + time.time() - t0
        return results

    def _prefix_batches(self, seqs: dict[int, list[int]], extra: Callable[[int], int], rows: Callable[[int], int],
                        generating: bool = False, keep: Callable[[int], int] = lambda i: 1
                        ) -> Iterator[tuple[list[int], list[int]]]:
        """(shared prefix tokens, indices) batches: groups by shared prefix, then length-sorted batches of the
        suffixes, sized by suffix + extra(i) tokens (the prefix is computed once per group, not per row); each
        suffix keeps at least keep(i) tokens."""
        idx = list(seqs)
        min_prefix = self.min_shared_prefix if self.min_shared_prefix > 0 else 1 << 30
        # generation: a group gets its own decoding loop, worth it only when sharing saves more prefill than the
        # loop costs (a decode step of a batch costs about as much as prefilling 16 tokens here)
        saving = 16 * max((extra(i) for i in idx), default=0) if generating else 1
        for plen, group in shared_prefix_groups([seqs[i] for i in idx], min_prefix, saving, [keep(i) for i in idx]):
            members = [idx[g] for g in group]
            prefix = seqs[members[0]][:plen]
            lengths = [len(seqs[i]) - plen + extra(i) for i in members]
            for b in self._batches(lengths, [rows(i) for i in members]):
                yield prefix, [members[j] for j in b]

    @torch.no_grad()
    def _prefix_cache(self, prefix: list[int]):
        """KV cache of a shared prefix (batch 1), computed once per group and copied per batch."""
        if getattr(self, "_prefix_key", None) != prefix:
            out = self.model(input_ids=torch.tensor([prefix], device=self._device()), use_cache=True)
            self.stats["forward_calls"] += 1
            self.stats["prompt_tokens"] += len(prefix)
            self._prefix_key, self._prefix_kv = list(prefix), _out_cache(out)
        return self._prefix_kv

    @torch.no_grad()
    def _lm_forward(self, prefix: list[int], suffixes: list[list[int]], logits_to_keep: int = 1):
        """One decoder-only forward of left-padded suffixes after a shared prefix (whose cache is reused).
        Returns (output, attention mask over prefix+suffix, position ids of the suffix tokens)."""
        dev, P = self._device(), len(prefix)
        B, L = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((B, L), self.tok.pad_id, dtype=torch.long, device=dev)
        att = torch.zeros((B, P + L), dtype=torch.long, device=dev)
        att[:, :P] = 1
        for b, s in enumerate(suffixes):
            ids[b, L - len(s):] = torch.tensor(s)
            att[b, P + L - len(s):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)[:, P:]
        kw = {"input_ids": ids, "attention_mask": att, "position_ids": pos, "use_cache": True}
        if P:
            shared = self._prefix_cache(prefix)
            cache = copy.copy(shared)  # new layer objects; batch_repeat_interleave then makes new tensors
            cache.layers = [copy.copy(layer) for layer in shared.layers]
            cache.batch_repeat_interleave(B)
            kw[self.kw] = cache
            self.stats["shared_prefix_tokens"] += P * (B - 1)
        if self.keep_kw:
            kw["logits_to_keep"] = logits_to_keep
        self.stats["prompt_tokens"] += int(att[:, P:].sum())
        self.stats["forward_calls"] += 1
        return self.model(**kw), att, pos

    # ------------------------------------------------------------------ generation
    def generate(self, requests: Sequence[GenRequest]) -> list[list[str]]:
        keys = [self._key("gen", _payload(r)) for r in requests]

        def unit(idx: list[int], prompts: list[list[int]], prefix: list[int] = ()) -> Unit:
            return Unit(lambda: list(zip(idx, self._generate_batch([requests[i] for i in idx], prompts, prefix))))

        def plan(todo):
            prompts = {i: self.encode_context(requests[i].prompt) for i in todo}
            if self.encoder_decoder:
                for b in self._batches([len(prompts[i]) + requests[i].max_new_tokens for i in todo],
                                       [requests[i].n for i in todo]):
                    idx = [todo[j] for j in b]
                    yield unit(idx, [prompts[i] for i in idx])
                return
            for prefix, idx in self._prefix_batches(prompts, lambda i: requests[i].max_new_tokens, lambda i: requests[i].n,
                                                    generating=True):
                yield unit(idx, [prompts[i][len(prefix):] for i in idx], prefix)
        return self._cached(keys, plan)

    def _stopped(self, ids: list[int], stop: tuple[str, ...]) -> bool:
        return bool(stop) and any(s in self.tok.decode(ids) for s in stop)

    @torch.no_grad()
    def _generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]], prefix: list[int] = ()
                        ) -> list[list[str]]:
        model, tok = self.model, self.tok
        dev = self._device()
        ns = [r.n for r in reqs]
        rep = torch.tensor(ns, device=dev)
        B = len(prompts)
        if self.encoder_decoder:
            L = max(len(p) for p in prompts)
            ids = torch.full((B, L), tok.pad_id, dtype=torch.long, device=dev)
            att = torch.zeros((B, L), dtype=torch.long, device=dev)
            for b, p in enumerate(prompts):  # right padding for the encoder
                ids[b, :len(p)] = torch.tensor(p)
                att[b, :len(p)] = 1
            self.stats["prompt_tokens"] += int(att.sum())
            self.stats["forward_calls"] += 1
            enc = base_model(model).encoder(input_ids=ids, attention_mask=att).last_hidden_state  # once per prompt
            enc = enc.repeat_interleave(rep, 0)
            att = att.repeat_interleave(rep, 0)
            cur = torch.full((enc.size(0), 1), model.config.decoder_start_token_id, dtype=torch.long, device=dev)
            out = model(encoder_outputs=(enc,), attention_mask=att, decoder_input_ids=cur, use_cache=True)
            logits = out.logits[:, -1, :].float()
        else:
            out, att, pos = self._lm_forward(list(prefix), prompts)  # one prefill per prompt
            _out_cache(out).batch_select_indices(torch.arange(B, device=dev).repeat_interleave(rep))  # share it
            att = att.repeat_interleave(rep, 0)
            pos = pos[:, -1:].repeat_interleave(rep, 0)
            logits = out.logits[:, -1, :].float().repeat_interleave(rep, 0)
        cache = _out_cache(out)
        R = logits.size(0)
        row_req = [r for r, n in zip(reqs, ns) for _ in range(n)]
        gens = []
        for r, n in zip(reqs, ns):
            for s in range(n):
                g = torch.Generator(device="cpu")
                g.manual_seed(int(hashlib.sha256(f"{r.seed}/{s}/{r.prompt}".encode()).hexdigest()[:12], 16))
                gens.append(g)
        max_new = max(r.max_new_tokens for r in row_req)
        out_ids: list[list[int]] = [[] for _ in range(R)]
        done = [False] * R
        live = list(range(R))  # rows still decoding; finished rows leave the batch (and its KV cache)
        for _ in range(max_new):
            nxt = {}
            for j, i in enumerate(live):
                r = row_req[i]
                lg = logits[j]
                if r.temperature <= 0:
                    nxt[i] = int(lg.argmax())
                    continue
                lg = lg / r.temperature
                if r.top_k > 0:
                    kth = torch.topk(lg, min(r.top_k, lg.numel())).values[-1]
                    lg = lg.masked_fill(lg < kth, float("-inf"))
                if r.top_p < 1.0:
                    lg = nucleus(lg, r.top_p)
                nxt[i] = int(torch.multinomial(torch.softmax(lg, -1).cpu(), 1, generator=gens[i]))
            for i in live:
                r, tid = row_req[i], nxt[i]
                if tid == tok.eos_id:
                    done[i] = True
                    continue
                out_ids[i].append(tid)
                self.stats["generated_tokens"] += 1
                done[i] = len(out_ids[i]) >= r.max_new_tokens or self._stopped(out_ids[i], r.stop)
            keep = [j for j, i in enumerate(live) if not done[i]]
            if not keep:
                break
            if len(keep) < len(live):
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                att = att[sel]
                if self.encoder_decoder:
                    enc = enc[sel]
                else:
                    pos = pos[sel]
                live = [live[j] for j in keep]
            step = torch.tensor([[nxt[i]] for i in live], dtype=torch.long, device=dev)
            if self.encoder_decoder:
                out = model(encoder_outputs=(enc,), attention_mask=att, decoder_input_ids=step, use_cache=True,
                            **{self.kw: cache})
            else:
                att = torch.cat([att, torch.ones((len(live), 1), dtype=att.dtype, device=dev)], 1)
                pos = pos + 1
                out = model(input_ids=step, attention_mask=att, position_ids=pos, use_cache=True, **{self.kw: cache})
            cache = _out_cache(out)
            logits = out.logits[:, -1, :].float()
        texts = []
        for i, r in enumerate(row_req):
            s = tok.decode(out_ids[i])
            for st in r.stop:  # cut at the first stop string (as lm-eval does)
                s = s.split(st)[0]
            texts.append(s)
        res, k = [], 0
        for n in ns:
            res.append(texts[k:k + n])
            k += n
        return res

    # ------------------------------------------------------------------ log-likelihood ranking
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-evaluation-harness's split for decoder-only models: trailing whitespace of the context moves into
        the continuation, the two are tokenized together, and the continuation is what follows the context's
        tokens."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        # untruncated here (truncating each separately would cut the continuation off a long context); the row
        # built from the pair is cut to max_prompt_len instead
        whole = self.encode_context(context + continuation, truncate=False)
        ctx = self.encode_context(context, truncate=False)
        return ctx, whole[len(ctx):]

    def loglik(self, prompt_options: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Summed log-probability of each continuation given its context. Decoder-only: continuations are scored
        as they are (the caller adds the target delimiter, e.g. " A"), no end-of-sequence token. Encoder-decoder:
        each option is the decoder target followed by eos."""
        keys = [self._key("ll", [p, list(o)]) for p, o in prompt_options]
        if self.encoder_decoder:
            def unit(idx, work) -> Unit:
                return Unit(lambda: list(zip(idx, self._loglik_batch_ed([work[i][0] for i in idx],
                                                                        [work[i][1] for i in idx]))))

            def plan(todo):
                work = {i: (self.encode_context(prompt_options[i][0]),
                            [self.tok.encode(o) + [self.tok.eos_id] for o in prompt_options[i][1]]) for i in todo}
                for b in self._batches([len(work[i][0]) + max(len(o) for o in work[i][1]) for i in todo],
                                       [len(work[i][1]) for i in todo]):
                    yield unit([todo[j] for j in b], work)
            return self._cached(keys, plan)
        return self._cached(keys, lambda todo: self._loglik_lm(prompt_options, todo))

    def _loglik_lm(self, prompt_options, todo: list[int]) -> Iterator[Unit]:
        # every (request, option) is scored on a row: inputs = context + continuation minus its last token, the
        # continuation's tokens scored at the row's end. Options with equal rows (one-token continuations of one
        # context, as MMLU's " A".." D") share the row, so it runs once.
        rows: dict[tuple[int, ...], int] = {}
        needs: dict[int, set[tuple[int, ...]]] = {}  # row -> continuations scored on it
        asked: dict[int, list[tuple[int, tuple[int, ...]]]] = {}  # request -> [(row, continuation)] per option
        for i in todo:
            ctx, opts = prompt_options[i]
            for o in opts:
                c, cont = self.encode_pair(ctx, o)
                if not cont:
                    raise ValueError(f"continuation {o!r} adds no token to its context")
                seq = (c + cont)[-(self.max_prompt_len + 1):]
                r = rows.setdefault(tuple(seq[:-1]), len(rows))
                needs.setdefault(r, set()).add(tuple(cont))
                asked.setdefault(i, []).append((r, tuple(cont)))
        row_ids = {r: list(key) for key, r in rows.items()}
        scores: dict[tuple[int, tuple[int, ...]], float] = {}
        waiting = list(todo)

        def compute(prefix: list[int], idx: list[int]) -> dict:
            k = max(len(c) for r in idx for c in needs[r])
            out, _, _ = self._lm_forward(prefix, [row_ids[r][len(prefix):] for r in idx], logits_to_keep=k)
            logp = torch.log_softmax(out.logits[:, -k:, :].float(), -1)
            part = {}
            for b, r in enumerate(idx):
                for cont in needs[r]:
                    ids = torch.tensor(cont, device=logp.device)[:, None]
                    part[(r, cont)] = float(logp[b, k - len(cont):].gather(-1, ids).sum())
            return part

        def finish(part: dict) -> list[tuple[int, list[float]]]:  # the requests whose every option is now scored
            nonlocal waiting
            scores.update(part)
            done = [i for i in waiting if all(x in scores for x in asked[i])]
            finished = set(done)
            waiting = [i for i in waiting if i not in finished]
            return [(i, [scores[x] for x in asked[i]]) for i in done]
        # a continuation's tokens are scored from the row's last positions, which must not fall in a shared prefix
        longest = {r: max(len(c) for c in cs) for r, cs in needs.items()}
        for prefix, idx in self._prefix_batches(row_ids, lambda r: 0, lambda r: 1, keep=lambda r: longest[r]):
            yield Unit(lambda prefix=prefix, idx=idx: compute(prefix, idx), finish)

    @torch.no_grad()
    def _loglik_batch_ed(self, prompts: list[list[int]], options: list[list[list[int]]]) -> list[list[float]]:
        from ..models.packed import Tokenized, collate, forward_logits
        rows = [[Tokenized(p, o)] for p, os_ in zip(prompts, options) for o in os_]
        batch = collate(rows, True, self.tok.pad_id, getattr(self.model.config, "decoder_start_token_id", 0) or 0)
        logits = forward_logits(self.model, batch).float()
        logp = torch.log_softmax(logits, -1)
        labels = batch["labels"].to(logp.device)
        mask = labels != -100
        tok_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        flat = tok_lp.sum(-1).tolist()
        self.stats["forward_calls"] += 1
        res, k = [], 0
        for os_ in options:
            res.append(flat[k:k + len(os_)])
            k += len(os_)
        return res
