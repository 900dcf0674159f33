"""Batched decoding for encoder-decoder and decoder-only models.

- greedy and sampling (temperature, top-k); k samples of a prompt share one encoder pass (T5) or
  one prompt prefill whose KV cache is repeated k times (decoder-only);
- multiple-choice log-likelihood ranking;
- requests batched by length; every answered request is appended to an on-disk cache keyed by
  (model fingerprint, request), so an interrupted evaluation resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..train.models import base_model
from ..train.packing import lm_prompt


@dataclass(frozen=True)
class GenRequest:
    prompt: str
    n: int = 1
    temperature: float = 0.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0


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
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.data: dict[str, object] = {}
        self.hits = 0
        if self.path and self.path.is_file():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a record cut by a kill: drop it so appends start on a fresh line
                with self.path.open("r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a kill: ignore it
                        continue
                    self.data[rec["k"]] = rec["v"]
        self._fh = None

    def get(self, key: str):
        v = self.data.get(key)
        if v is not None:
            self.hits += 1
        return v

    def put_many(self, items: list[tuple[str, object]]) -> None:
        for k, v in items:
            self.data[k] = v
        if self.path:
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
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)


class Engine:
    def __init__(self, model, tok, *, fingerprint: str = "", cache_path: str | Path | None = None,
                 batch_tokens: int = 16384, max_prompt_len: int = 2048):
        self.model = model.eval()
        self.tok = tok
        self.ed = bool(model.config.is_encoder_decoder)
        self.fp = fingerprint
        self.cache = DiskCache(cache_path)
        self.batch_tokens = batch_tokens
        self.max_prompt_len = max_prompt_len
        self.kw = _cache_kw(model)
        self.stats = {"generated_tokens": 0, "prompt_tokens": 0, "forward_calls": 0}

    # ------------------------------------------------------------------ helpers
    def _key(self, kind: str, payload) -> str:
        return hashlib.sha256(json.dumps([self.fp, kind, payload], sort_keys=True).encode()).hexdigest()

    def _encode_prompt(self, prompt: str) -> list[int]:
        if self.ed:
            return self.tok.encode(prompt)[-(self.max_prompt_len - 1):] + [self.tok.eos_id]
        return self.tok.encode(lm_prompt(prompt))[-self.max_prompt_len:]

    def _batches(self, lengths: list[int], mult: list[int]):
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch, width = [], 0
        for i in order:
            w = max(width, lengths[i])
            rows = sum(mult[j] for j in batch) + mult[i]
            if batch and w * rows > self.batch_tokens:
                yield batch
                batch, w = [], lengths[i]
            batch.append(i)
            width = w
        if batch:
            yield batch

    def _cached(self, keys: list[str], prepare, length, rows, run_batch) -> list:
        """Answer each key from the disk cache, or compute the misses in length-sorted batches and append
        each finished batch to the cache. prepare(i) -> work item; length(w) / rows(w) size it for batching;
        run_batch([w]) -> results."""
        results: list = [self.cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            work = {i: prepare(i) for i in todo}
            for b in self._batches([length(work[i]) for i in todo], [rows(work[i]) for i in todo]):
                idx = [todo[j] for j in b]
                for i, out in zip(idx, run_batch([work[i] for i in idx])):
                    results[i] = out
                self.cache.put_many([(keys[i], results[i]) for i in idx])
        return results

    # ------------------------------------------------------------------ generation
    def generate(self, requests: Sequence[GenRequest]) -> list[list[str]]:
        return self._cached([self._key("gen", asdict(r)) for r in requests],
                            prepare=lambda i: (requests[i], self._encode_prompt(requests[i].prompt)),
                            length=lambda w: len(w[1]) + w[0].max_new_tokens, rows=lambda w: w[0].n,
                            run_batch=lambda ws: self._generate_batch([w[0] for w in ws], [w[1] for w in ws]))

    @torch.no_grad()
    def _generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]]) -> list[list[str]]:
        model, tok = self.model, self.tok
        dev = next(model.parameters()).device
        ns = [r.n for r in reqs]
        rep = torch.tensor(ns, device=dev)
        B, L = len(prompts), max(len(p) for p in prompts)
        pad = tok.pad_id
        ids = torch.full((B, L), pad, dtype=torch.long, device=dev)
        att = torch.zeros((B, L), dtype=torch.long, device=dev)
        for b, p in enumerate(prompts):
            if self.ed:  # right padding for the encoder
                ids[b, :len(p)] = torch.tensor(p)
                att[b, :len(p)] = 1
            else:  # left padding so every row's next token is at the end
                ids[b, L - len(p):] = torch.tensor(p)
                att[b, L - len(p):] = 1
        self.stats["prompt_tokens"] += int(att.sum())
        self.stats["forward_calls"] += 1
        if self.ed:
            base = base_model(model)
            enc = base.encoder(input_ids=ids, attention_mask=att).last_hidden_state  # one encoder pass per prompt
            enc = enc.repeat_interleave(rep, 0)
            att = att.repeat_interleave(rep, 0)
            cur = torch.full((enc.size(0), 1), model.config.decoder_start_token_id, dtype=torch.long, device=dev)
            out = model(encoder_outputs=(enc,), attention_mask=att, decoder_input_ids=cur, use_cache=True)
        else:
            pos = (att.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True)  # one prefill per prompt
            _out_cache(out).batch_select_indices(torch.arange(B, device=dev).repeat_interleave(rep))  # share the prefill
            att = att.repeat_interleave(rep, 0)
            pos = pos[:, -1:].repeat_interleave(rep, 0)
        logits = out.logits[:, -1, :].float().repeat_interleave(rep, 0) if not self.ed else out.logits[:, -1, :].float()
        cache = _out_cache(out)
        R = logits.size(0)
        row_req = [r for r, n in zip(reqs, ns) for _ in range(n)]
        gens = []
        for r, n in zip(reqs, ns):
            for s in range(n):
                g = torch.Generator(device="cpu")
                g.manual_seed(int(hashlib.sha256(f"{r.seed}/{s}/{r.prompt}".encode()).hexdigest()[:12], 16))
                gens.append(g)
        temps = torch.tensor([r.temperature for r in row_req], device=dev)
        topk = [r.top_k for r in row_req]
        max_new = max(r.max_new_tokens for r in row_req)
        out_ids = [[] for _ in range(R)]
        done = torch.zeros(R, dtype=torch.bool)
        for t in range(max_new):
            nxt = torch.empty(R, dtype=torch.long)
            for i in range(R):
                if done[i]:
                    nxt[i] = pad
                    continue
                lg = logits[i]
                if temps[i] <= 0:
                    nxt[i] = int(lg.argmax())
                    continue
                lg = lg / temps[i]
                if topk[i] > 0:
                    kth = torch.topk(lg, min(topk[i], lg.numel())).values[-1]
                    lg = lg.masked_fill(lg < kth, float("-inf"))
                probs = torch.softmax(lg, -1)
                nxt[i] = int(torch.multinomial(probs.cpu(), 1, generator=gens[i]))
            for i in range(R):
                if done[i]:
                    continue
                tid = int(nxt[i])
                if tid == tok.eos_id:
                    done[i] = True
                    continue
                out_ids[i].append(tid)
                if len(out_ids[i]) >= row_req[i].max_new_tokens:
                    done[i] = True
                elif row_req[i].stop and tid < 259:
                    text = tok.decode(out_ids[i][-48:])
                    if any(s in text for s in row_req[i].stop):
                        done[i] = True
            self.stats["generated_tokens"] += int((~done).sum())
            if bool(done.all()):
                break
            step = nxt.view(R, 1).to(dev)
            if self.ed:
                out = model(encoder_outputs=(enc,), attention_mask=att, decoder_input_ids=step, use_cache=True, **{self.kw: cache})
            else:
                att = torch.cat([att, torch.ones((R, 1), dtype=att.dtype, device=dev)], 1)
                pos = pos + 1
                out = model(input_ids=step, attention_mask=att, position_ids=pos, use_cache=True, **{self.kw: cache})
            cache = _out_cache(out)
            logits = out.logits[:, -1, :].float()
        texts = []
        for i in range(R):
            s = tok.decode(out_ids[i])
            for st in row_req[i].stop:
                if st in s:
                    s = s[: s.index(st)]
            texts.append(s)
        res, k = [], 0
        for n in ns:
            res.append(texts[k:k + n])
            k += n
        return res

    # ------------------------------------------------------------------ log-likelihood ranking
    def loglik(self, prompt_options: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Sum of log-probabilities of each option (plus eos) given the prompt."""
        return self._cached([self._key("ll", [p, list(o)]) for p, o in prompt_options],
                            prepare=lambda i: (self._encode_prompt(prompt_options[i][0]),
                                               [self.tok.encode(o) + [self.tok.eos_id] for o in prompt_options[i][1]]),
                            length=lambda w: len(w[0]) + max(len(o) for o in w[1]), rows=lambda w: len(w[1]),
                            run_batch=lambda ws: self._loglik_batch([w[0] for w in ws], [w[1] for w in ws]))

    @torch.no_grad()
    def _loglik_batch(self, prompts: list[list[int]], options: list[list[list[int]]]) -> list[list[float]]:
        from ..train.packing import Tokenized, collate, forward_logits
        rows = [[Tokenized(p, o)] for p, os_ in zip(prompts, options) for o in os_]
        batch = collate(rows, self.ed, self.tok.pad_id, getattr(self.model.config, "decoder_start_token_id", 0) or 0)
        logits = forward_logits(self.model, batch).float()
        logp = torch.log_softmax(logits, -1)
        labels = batch["labels"]
        mask = labels != -100
        tok_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        flat = tok_lp.sum(-1).tolist()
        self.stats["forward_calls"] += 1
        res, k = [], 0
        for os_ in options:
            res.append(flat[k:k + len(os_)])
            k += len(os_)
        return res
