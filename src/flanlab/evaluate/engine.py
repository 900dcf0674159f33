"""The model side of evaluation: it answers requests and knows nothing of benchmarks. Its parts, by concern:

- requests.py: the vocabulary (GenRequest; log-likelihood requests are (context, [continuations]) pairs; Unit);
- planning.py: requests into batches by length, and decoder-only requests sharing a long prefix grouped;
- kv_cache.py: decoder-only forwards after a shared prefix whose KV cache is computed once;
- decoding.py: greedy / sampled decoding, stop strings, finished rows leaving the batch;
- loglik.py: log-likelihood scoring, encoded as lm-evaluation-harness encodes it;
- answer_cache.py: answered requests on disk, so an interrupted evaluation resumes where it stopped.

Data-parallel (`flanlab eval --nproc N`): the batches one process would run are planned the same way in every
process and dealt out round-robin; each round's results are gathered, so every process holds all answers (the same
batches computed by the same code: the same answers as one process), and process 0 alone writes the cache.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..memory import release_freed
from ..models.build import base_model
from ..models.device import Processes, autocast, fp32_output_head
from . import decoding, loglik as ll
from .answer_cache import DiskCache, model_fingerprint
from .decoding import nucleus
from .kv_cache import PrefixLM
from .planning import Planner, shared_prefix_groups
from .requests import GenRequest, Unit, cache_payload



class Engine:
    def __init__(self, model, tok, *, fingerprint: str = "", cache_path: str | Path | None = None,
                 batch_tokens: int = 16384, max_prompt_len: int = 2048, min_shared_prefix: int = 64,
                 max_batch_rows: int = 32, min_fill: float = 0.75, progress: Callable[[int, int], None] | None = None,
                 processes: Processes | None = None, precision: str = "fp32"):
        self.model = model.eval()
        self.tok = tok
        self.encoder_decoder = bool(base_model(model).config.is_encoder_decoder)
        # bf16: every forward under bfloat16 autocast but the output head (fp32 logits); its answers are cached apart
        # from fp32's
        self.precision = precision
        self.head = base_model(model).get_output_embeddings() if precision == "bf16" else None
        self.fp = fingerprint if precision == "fp32" else f"{fingerprint}/{precision}+fp32-logits"
        self.procs = processes or Processes()
        self.cache = DiskCache(cache_path, writer=self.procs.rank == 0)
        self.planner = Planner(batch_tokens, max_batch_rows, min_fill, min_shared_prefix)
        self.max_prompt_len = max_prompt_len
        self.progress = progress
        self.stats = {"generated_tokens": 0, "prompt_tokens": 0, "forward_calls": 0, "shared_prefix_tokens": 0}
        self.lm = PrefixLM(model, tok.pad_id, self.stats)

    def _key(self, kind: str, payload) -> str:
        return hashlib.sha256(json.dumps([self.fp, kind, payload], sort_keys=True).encode()).hexdigest()

    def encode_context(self, text: str, truncate: bool = True) -> list[int]:
        """Prompt tokens; `truncate`: only the last max_prompt_len (the exemplars furthest from the question go)."""
        n = self.max_prompt_len if truncate else 1 << 62
        if self.encoder_decoder:
            return self.tok.encode(text)[-(n - 1):] + [self.tok.eos_id]
        return (self.tok.bos + self.tok.encode(text))[-n:]

    def encode_contexts(self, texts: list[str], truncate: bool = False) -> list[list[int]]:
        """encode_context of many texts (decoder-only) in one tokenizer call; untruncated unless asked."""
        n = self.max_prompt_len if truncate else 1 << 62
        return [(self.tok.bos + ids)[-n:] for ids in self.tok.encode_many(texts)]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return ll.encode_pair(self.encode_context, context, continuation)

    def _phase(self, name: str, seconds: float, tokens: int) -> None:
        """Time and tokens computed per phase (loglik, prefill, decode): what a roofline compares with the ceiling."""
        self.stats[f"{name}_seconds"] = self.stats.get(f"{name}_seconds", 0.0) + seconds
        self.stats[f"{name}_tokens"] = self.stats.get(f"{name}_tokens", 0) + tokens

    def _cached(self, keys: list[str], plan: Callable[[list[int]], Iterator[Unit]], phase: str | None = None) -> list:
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
            t_unit, tokens0 = time.perf_counter(), self.stats["prompt_tokens"]
            with autocast(self.precision, self.lm.device()), fp32_output_head(self.head, self.lm.device()):
                part = round_[rank].compute() if rank < len(round_) else None
            if phase:  # log-likelihood units: one forward over context + continuations
                self._phase(phase, time.perf_counter() - t_unit, self.stats["prompt_tokens"] - tokens0)
            release_freed()  # the batch's tensors are gone: their heap pages go back (FLANLAB_MALLOC=trim)
            parts = self.procs.gather(part)
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

    # ------------------------------------------------------------------ generation
    def generate(self, requests: Sequence[GenRequest]) -> list[list[str]]:
        """n continuations per request (greedy, or sampled with the request's seed)."""
        keys = [self._key("gen", cache_payload(r)) for r in requests]

        def unit(idx: list[int], prompts: list[list[int]], prefix: list[int] = ()) -> Unit:
            return Unit(lambda: list(zip(idx, self._generate_batch([requests[i] for i in idx], prompts, prefix))))

        def plan(todo):
            prompts = (dict(zip(todo, self.encode_contexts([requests[i].prompt for i in todo], truncate=True)))
                       if not self.encoder_decoder else {i: self.encode_context(requests[i].prompt) for i in todo})
            if self.encoder_decoder:
                for b in self.planner.batches([len(prompts[i]) + requests[i].max_new_tokens for i in todo],
                                              [requests[i].n for i in todo]):
                    idx = [todo[j] for j in b]
                    yield unit(idx, [prompts[i] for i in idx])
                return
            for prefix, idx in self.planner.prefix_batches(prompts, lambda i: requests[i].max_new_tokens,
                                                           lambda i: requests[i].n, generating=True):
                yield unit(idx, [prompts[i][len(prefix):] for i in idx], prefix)
        return self._cached(keys, plan)

    @torch.no_grad()
    def _generate_batch(self, reqs: list[GenRequest], prompts: list[list[int]], prefix: list[int] = ()
                        ) -> list[list[str]]:
        rep = torch.tensor([r.n for r in reqs], device=self.lm.device())
        t0, prompt0, gen0 = time.perf_counter(), self.stats["prompt_tokens"], self.stats["generated_tokens"]
        if self.encoder_decoder:
            rows = decoding.prefill_encoder_decoder(self.model, self.tok.pad_id, prompts, rep, self.stats)
        else:
            rows = decoding.prefill_decoder(self.lm, list(prefix), prompts, rep)
        t1 = time.perf_counter()
        self._phase("prefill", t1 - t0, self.stats["prompt_tokens"] - prompt0)
        out = decoding.decode(self.model, self.tok, self.lm.kw, rows, reqs, self.stats)
        self._phase("decode", time.perf_counter() - t1, self.stats["generated_tokens"] - gen0)
        ids = iter(out)
        return [[decoding.cut_at_stop(self.tok.decode(next(ids)), r.stop) for _ in range(r.n)] for r in reqs]

    # ------------------------------------------------------------------ log-likelihood ranking
    def loglik(self, prompt_options: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Summed log-probability of each continuation given its context. Decoder-only: continuations are scored
        as they are (the caller adds the target delimiter, e.g. " A"), no end-of-sequence token. Encoder-decoder:
        each option is the decoder target followed by eos."""
        keys = [self._key("ll", [p, list(o)]) for p, o in prompt_options]
        if not self.encoder_decoder:
            return self._cached(keys, lambda todo: ll.decoder_units(prompt_options, todo, self.encode_contexts,
                                                                    self.max_prompt_len, self.lm, self.planner),
                                phase="loglik")

        def plan(todo):
            work = {i: (self.encode_context(prompt_options[i][0]),
                        [self.tok.encode(o) + [self.tok.eos_id] for o in prompt_options[i][1]]) for i in todo}
            for b in self.planner.batches([len(work[i][0]) + max(len(o) for o in work[i][1]) for i in todo],
                                          [len(work[i][1]) for i in todo]):
                idx = [todo[j] for j in b]
                yield Unit(lambda idx=idx: list(zip(idx, ll.encoder_decoder_scores(
                    self.model, self.tok, [work[i][0] for i in idx], [work[i][1] for i in idx], self.stats))))
        return self._cached(keys, plan, phase="loglik")
