"""Decoder-only forwards that reuse a shared prefix's KV cache: the prefix (a few-shot prompt's exemplars) runs once
at batch 1, and each batch of left-padded suffixes runs on a copy of its cache repeated per row."""
from __future__ import annotations

import copy
import inspect

import torch

from ..models.build import base_model


def cache_kw(model) -> str:
    """The keyword this model's forward takes its KV cache by (transformers renamed it)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


class PrefixLM:
    """A decoder-only model answering forwards of suffixes after a shared prefix; counts its work in `stats`."""

    def __init__(self, model, pad_id: int, stats: dict):
        self.model, self.pad_id, self.stats = model, pad_id, stats
        self.kw = cache_kw(model)
        self.keep_kw = "logits_to_keep" in inspect.signature(base_model(model).forward).parameters
        self._key, self._kv = None, None

    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def prefix_cache(self, prefix: list[int]):
        """KV cache of a shared prefix (batch 1), computed once per group and copied per batch."""
        if self._key != prefix:
            out = self.model(input_ids=torch.tensor([prefix], device=self.device()), use_cache=True)
            self.stats["forward_calls"] += 1
            self.stats["prompt_tokens"] += len(prefix)
            self._key, self._kv = list(prefix), out_cache(out)
        return self._kv

    def repeated_prefix_cache(self, prefix: list[int], rows: int):
        shared = self.prefix_cache(prefix)
        cache = copy.copy(shared)  # new layer objects; batch_repeat_interleave then makes new tensors
        cache.layers = [copy.copy(layer) for layer in shared.layers]
        cache.batch_repeat_interleave(rows)
        self.stats["shared_prefix_tokens"] += len(prefix) * (rows - 1)
        return cache

    @torch.no_grad()
    def forward(self, prefix: list[int], suffixes: list[list[int]], logits_to_keep: int = 1):
        """One forward of left-padded suffixes after a shared prefix (whose cache is reused).
        Returns (output, attention mask over prefix+suffix, position ids of the suffix tokens)."""
        dev, P = self.device(), len(prefix)
        B, L = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long, device=dev)
        att = torch.zeros((B, P + L), dtype=torch.long, device=dev)
        att[:, :P] = 1
        for b, s in enumerate(suffixes):
            ids[b, L - len(s):] = torch.tensor(s)
            att[b, P + L - len(s):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)[:, P:]
        kw = {"input_ids": ids, "attention_mask": att, "position_ids": pos, "use_cache": True}
        if P:
            kw[self.kw] = self.repeated_prefix_cache(prefix, B)
        if self.keep_kw:
            kw["logits_to_keep"] = logits_to_keep
        self.stats["prompt_tokens"] += int(att[:, P:].sum())
        self.stats["forward_calls"] += 1
        return self.model(**kw), att, pos
