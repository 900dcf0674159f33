"""Attention over packed rows that computes only the blocks a segment may see.

A packed row of length L holding segments of lengths l1..ln needs sum(li^2) attention scores, but a
masked dense attention computes L^2 and throws most of them away (for T5's cross-attention it is
Lq*Lk against sum(qi*ki)). Here every segment is gathered out of the token stream into its own slot,
slots of similar length are batched together (length buckets chosen by a small dynamic program that
trades padding against the fixed cost of a call; each bucket is padded only to its own longest
segment), attention runs per bucket with key padding / causal masks, and the outputs are scattered
back. models/packed.py runs the rest of the model on the rows' tokens laid end to end without padding
(one [1, T] stream), so no layer computes anything for padding.

T5's relative position bias only depends on key - query distance, so the bias a segment needs is the
top-left [:Sq, :Sk] block of the row's bias. Decoder-only rows restart position ids per segment, so
rotary embeddings are already per segment before attention.

Used through transformers' attention interface: `packed_attention(model, layout)` switches the
model's attention implementation to this function for the duration of one forward and restores it
afterwards, so generation and any other forward use the model's own attention (a call that somehow
arrives here without a layout falls back to SDPA).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import hf_compat

NAME = "flanlab_packed"
_LAYOUT: contextvars.ContextVar = contextvars.ContextVar("flanlab_packed_layout", default=None)
_CONFIGS: contextvars.ContextVar = contextvars.ContextVar("flanlab_packed_configs", default=None)


@dataclass
class Bucket:
    n: int  # segments in this bucket
    Sq: int  # their longest query length
    Sk: int  # their longest key length
    mask: torch.Tensor  # [n, 1, Sq, Sk] additive float mask (key padding, causal)


@dataclass
class Plan:
    buckets: list[Bucket]
    q_idx: torch.Tensor  # [sum n*Sq] flat query position of every bucket slot (padding slots point at position 0)
    k_idx: torch.Tensor  # [sum n*Sk]
    inverse: torch.Tensor  # [B*Lq] slot of every query position; padding positions -> `slots` (a zero row)
    slots: int  # sum n*Sq
    max_len: int  # longest query or key segment
    # for fused variable-length attention on a GPU (one [1, T] stream): segment boundaries in stream order
    cu_q: torch.Tensor | None = None  # [segments + 1] int32 cumulative query lengths
    cu_k: torch.Tensor | None = None
    max_q: int = 0
    max_k: int = 0
    causal: bool = False
    kernel: str = "auto"  # one of KERNELS
    cache: dict = field(default_factory=dict)  # bucket -> (position bias, mask + bias) for the current forward


def segments(seg: torch.Tensor) -> dict[tuple[int, int], tuple[int, int]]:
    """(row, segment id) -> (start, length) for contiguous segment ids > 0 in a [B, L] tensor."""
    out = {}
    s = seg.cpu().numpy()
    for b in range(s.shape[0]):
        row = s[b]
        change = np.flatnonzero(np.diff(row)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(row)]])
        for a, e in zip(starts, ends):
            if row[a] > 0:
                out[(b, int(row[a]))] = (int(a), int(e - a))
    return out


def _groups(keys: list, q_segs: dict, k_segs: dict, overhead: int, window: int = 64) -> tuple[float, list[list]]:
    """Cut `keys` (in a length order) into contiguous groups minimising sum(n * Sq * Sk) + overhead per group,
    i.e. padded attention scores plus a fixed cost per batched call (dynamic programming, O(n * window)).
    Returns (cost, groups)."""
    n = len(keys)
    ql = [q_segs[k][1] for k in keys]
    kl = [k_segs[k][1] for k in keys]
    best = [0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        mq = mk = 0
        bj = best[j]
        for i in range(j - 1, max(0, j - window) - 1, -1):
            if ql[i] > mq:
                mq = ql[i]
            if kl[i] > mk:
                mk = kl[i]
            area = (j - i) * mq * mk + overhead
            if area >= bj:  # only grows as the group reaches further back, and best[i] >= 0
                break
            if best[i] + area < bj:
                bj, cut[j] = best[i] + area, i
        best[j] = bj
    out, j = [], n
    while j > 0:
        out.append(keys[cut[j]:j])
        j = cut[j]
    return best[n], out[::-1]


# fixed cost of one batched attention call, in query-key pairs. benchmarks/segattn_overhead.py (results in
# benchmarks/results/segattn_overhead_*.json): on t5-1m and llama-1m, 2 CPU cores, 1k-16k were about equally fast;
# one call per segment length (0) or one call for all segments were much slower
CALL_OVERHEAD = 4096
# the kernels a Plan may use (TrainConfig.attention_kernel): "auto" = on CUDA, fused variable-length flash attention
# for segments without a learned bias (see use_varlen), else per bucket torch's fused scaled_dot_product_attention
# when the mask needs no gradient (T5 cross-attention, Llama); "sdpa" = never varlen; "matmul" = always plain
# matmul / softmax / matmul (the reference the fused kernels are tested and benchmarked against)
KERNELS = ("auto", "sdpa", "matmul")


def plan(q_segs: dict, k_segs: dict, Lq: int, Lk: int, B: int, causal: bool, dtype=torch.float32,
         device=None, overhead: int | None = None) -> Plan:
    """Group the (query segment, key segment) pairs of each (row, segment id) into length buckets."""
    # the best of a few orders: by key length, by query length (they differ for cross-attention), by area
    call_cost = CALL_OVERHEAD if overhead is None else overhead
    keys = sorted(q_segs, key=lambda k: (k_segs[k][1], q_segs[k][1]))
    orders = [keys]
    if q_segs is not k_segs:  # cross-attention: query and key lengths differ, so try other orders too
        orders += [sorted(q_segs, key=lambda k: (q_segs[k][1], k_segs[k][1])),
                   sorted(q_segs, key=lambda k: (q_segs[k][1] * k_segs[k][1], k_segs[k][1]))]
    groups = min((_groups(o, q_segs, k_segs, call_cost) for o in orders), key=lambda cg: cg[0])[1]
    buckets, q_all, k_all = [], [], []
    inverse = np.full(B * Lq, -1, dtype=np.int64)
    slots = 0
    neg = torch.finfo(dtype).min
    for ks in groups:
        Sq = max(q_segs[k][1] for k in ks)
        Sk = max(k_segs[k][1] for k in ks)
        q_idx = np.zeros((len(ks), Sq), dtype=np.int64)
        k_idx = np.zeros((len(ks), Sk), dtype=np.int64)
        k_valid = np.zeros((len(ks), Sk), dtype=bool)
        for i, key in enumerate(ks):
            b = key[0]
            qs, ql = q_segs[key]
            ks_, kl = k_segs[key]
            q_idx[i, :ql] = b * Lq + qs + np.arange(ql)
            k_idx[i, :kl] = b * Lk + ks_ + np.arange(kl)
            k_valid[i, :kl] = True
            inverse[q_idx[i, :ql]] = slots + i * Sq + np.arange(ql)
        allowed = torch.from_numpy(k_valid)[:, None, None, :].expand(len(ks), 1, Sq, Sk)
        if causal:
            allowed = allowed & torch.ones(Sq, Sk, dtype=torch.bool).tril()
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, neg)
        buckets.append(Bucket(len(ks), Sq, Sk, mask.to(device)))
        q_all.append(q_idx.reshape(-1))
        k_all.append(k_idx.reshape(-1))
        slots += len(ks) * Sq
    inverse[inverse < 0] = slots
    longest = max([max(q_segs[k][1], k_segs[k][1]) for k in keys], default=1)
    if buckets:
        def cat(xs):
            return torch.from_numpy(np.concatenate(xs)).to(device)
    else:
        def cat(xs):
            return torch.zeros(0, dtype=torch.long)
    p = Plan(buckets, cat(q_all), cat(k_all), torch.from_numpy(inverse).to(device), slots, longest, causal=causal)
    if B == 1 and keys:  # a flat stream: segments are contiguous, in the same order on the query and key side
        order = sorted(q_segs, key=lambda k: q_segs[k][0])
        ql, kl = [q_segs[k][1] for k in order], [k_segs[k][1] for k in order]
        if sum(ql) == Lq and sum(kl) == Lk and all(k_segs[a][0] < k_segs[b][0] for a, b in zip(order, order[1:])):
            p.cu_q = torch.tensor(np.concatenate([[0], np.cumsum(ql)]), dtype=torch.int32, device=device)
            p.cu_k = torch.tensor(np.concatenate([[0], np.cumsum(kl)]), dtype=torch.int32, device=device)
            p.max_q, p.max_k = max(ql), max(kl)
    return p


def layout_for(batch: dict, dtype=torch.float32, device=None, kernel: str = "auto") -> dict[str, Plan]:
    """Plans for every attention in a packed batch (see packing.collate), each computed with `kernel`."""
    if kernel not in KERNELS:
        raise ValueError(f"attention kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    if "enc_seg" in batch:
        e, d = batch["enc_seg"], batch["dec_seg"]
        B, Le, Ld = e.shape[0], e.shape[1], d.shape[1]
        es, ds = segments(e), segments(d)
        plans = {"enc": plan(es, es, Le, Le, B, False, dtype, device),
                 "dec": plan(ds, ds, Ld, Ld, B, True, dtype, device),
                 "cross": plan(ds, es, Ld, Le, B, False, dtype, device)}
    else:
        s = batch["seg"]
        ss = segments(s)
        plans = {"self": plan(ss, ss, s.shape[1], s.shape[1], s.shape[0], True, dtype, device)}
    for p in plans.values():
        p.kernel = kernel
    return plans


def _which(module, layout: dict) -> Plan:
    if "self" in layout:
        return layout["self"]
    if not getattr(module, "is_decoder", False):
        return layout["enc"]
    return layout["dec"] if getattr(module, "is_causal", False) else layout["cross"]


# a position bias that adds nothing (T5 cross-attention); broadcastable, never read
ZERO_BIAS = torch.zeros(1, 1, 1, 1)


def _mask(p: Plan, i: int, bucket: Bucket, position_bias: torch.Tensor | None, dtype) -> torch.Tensor:
    """Additive mask of bucket i: padding / causal mask plus the relative position bias. T5 layers share one bias
    tensor, so the sum is built once per stack and reused by every layer."""
    if position_bias is None or position_bias is ZERO_BIAS:
        return bucket.mask.to(dtype)
    hit = p.cache.get(i)
    if hit is None or hit[0] is not position_bias:
        hit = (position_bias, bucket.mask.to(dtype) + position_bias[:, :, :bucket.Sq, :bucket.Sk].to(dtype))
        p.cache[i] = hit
    return hit[1]


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              position_bias: torch.Tensor | None = None, **kwargs):
    """transformers attention-interface function: query [B, H, Lq, D], key/value [B, Hkv, Lk, D];
    returns ([B, Lq, H, D], None)."""
    layout = _LAYOUT.get()
    if layout is None:
        return hf_compat.sdpa_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                        position_bias=position_bias, **kwargs)
    p = _which(module, layout)
    drop = dropout if module.training else 0.0
    window = kwargs.get("sliding_window")  # Gemma3's local layers: a query sees keys fewer than `window` back
    if use_varlen(p, query, position_bias, drop):
        return _varlen(p, query, key, value, scaling, window), None
    B, H, Lq, D = query.shape
    Lk = key.shape[2]
    if key.shape[1] != H:  # grouped-query attention
        rep = H // key.shape[1]
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    q = query.transpose(1, 2).reshape(B * Lq, H, D)
    k = key.transpose(1, 2).reshape(B * Lk, H, D)
    v = value.transpose(1, 2).reshape(B * Lk, H, value.shape[-1])
    Dv = v.shape[-1]
    scale = D ** -0.5 if scaling is None else scaling
    # one gather per tensor for all buckets (and one scatter-add in backward); split() gives per-bucket views
    Q = q.index_select(0, p.q_idx).split([b.n * b.Sq for b in p.buckets])
    K = k.index_select(0, p.k_idx).split([b.n * b.Sk for b in p.buckets])
    V = v.index_select(0, p.k_idx).split([b.n * b.Sk for b in p.buckets])
    outs = []
    for i, bucket in enumerate(p.buckets):
        n, Sq, Sk = bucket.n, bucket.Sq, bucket.Sk
        qb = Q[i].view(n, Sq, H, D).transpose(1, 2)  # [n, H, Sq, D]
        kb = K[i].view(n, Sk, H, D).permute(0, 2, 3, 1)  # [n, H, D, Sk]
        vb = V[i].view(n, Sk, H, Dv).transpose(1, 2)  # [n, H, Sk, Dv]
        m = _mask(p, i, bucket, position_bias, qb.dtype)
        if window is not None and bucket.Sq > window:
            m = _windowed(p, i, m, window)
        if p.kernel != "matmul" and not m.requires_grad:
            o = F.scaled_dot_product_attention(qb, kb.transpose(-1, -2), vb, attn_mask=m, dropout_p=drop, scale=scale)
        else:  # a learned bias needs its gradient, which the fused kernel does not give (it would fall back to this)
            scores = torch.matmul(qb, kb)
            if scale != 1.0:
                scores.mul_(scale)
            w = torch.softmax(scores.add_(m), dim=-1)
            if drop:
                w = F.dropout(w, p=drop, training=True)
            o = torch.matmul(w, vb)
        outs.append(o.transpose(1, 2).reshape(n * Sq, H, Dv))
    outs.append(q.new_zeros(1, H, Dv))
    out = torch.cat(outs).index_select(0, p.inverse)  # [B*Lq, H, Dv]
    return out.view(B, Lq, H, -1), None


def _windowed(p: Plan, i: int, m: torch.Tensor, window: int) -> torch.Tensor:
    """Bucket i's mask with keys `window` or more positions before the query masked too (segments start at slot
    position 0, so slot distance is token distance). masked_fill keeps every masked score at the dtype's finite
    minimum, so a padding query row with no key left in its window gets finite outputs (dropped afterwards)."""
    hit = p.cache.get(("window", i, window, m.dtype))
    if hit is None:
        q = torch.arange(m.shape[-2], device=m.device)[:, None]
        k = torch.arange(m.shape[-1], device=m.device)[None, :]
        hit = m.masked_fill(q - k >= window, torch.finfo(m.dtype).min)
        p.cache[("window", i, window, m.dtype)] = hit
    return hit


def use_varlen(p: Plan, query: torch.Tensor, position_bias, dropout: float) -> bool:
    """On a GPU, attention without a learned bias (Llama; not T5's relative bias) runs as one fused flash
    variable-length call over the segments (torch.nn.attention.varlen: CUDA, fp16/bf16, no dropout)."""
    return (p.kernel == "auto" and query.is_cuda and p.cu_q is not None
            and query.dtype in (torch.float16, torch.bfloat16)
            and (position_bias is None or position_bias is ZERO_BIAS) and dropout == 0.0)


def _varlen(p: Plan, query, key, value, scaling, window: int | None = None):
    """query [1, H, T, D], key/value [1, Hkv, T, D] -> [1, T, H, D] with attention inside each segment."""
    from torch.nn.attention.varlen import varlen_attn
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [T, heads, D]
    left = -1 if window is None else window - 1  # keys this far back at most (-1: no limit)
    out = varlen_attn(q, k, v, p.cu_q, p.cu_k, p.max_q, p.max_k, scale=scaling,
                      window_size=(left, 0 if p.causal else left), enable_gqa=key.shape[1] != query.shape[1])
    return out[None]


def _register() -> None:
    hf_compat.register_attention(NAME, attention)


def _switch(cfgs: list, layout: dict):
    """Per-segment attention with `layout` for every config in `cfgs`; returns what restores the previous state."""
    old = [hf_compat.attn_implementation(c) for c in cfgs]
    token = _LAYOUT.set(layout)
    for c in cfgs:
        hf_compat.set_attn_implementation(c, NAME)

    def restore():
        for c, o in zip(cfgs, old):
            hf_compat.set_attn_implementation(c, o)
        _LAYOUT.reset(token)
    return restore


@contextlib.contextmanager
def packed_attention(model, layout: dict):
    """Within this block, `model`'s attention runs per segment according to `layout`."""
    _register()
    cfgs = hf_compat.configs_with_attention(model)
    ctoken = _CONFIGS.set(cfgs)
    restore = _switch(cfgs, layout)
    try:
        yield
    finally:
        restore()
        _CONFIGS.reset(ctoken)


def recompute_context():
    """`context_fn` for torch.utils.checkpoint (activation checkpointing): a block recomputed in the backward pass
    runs outside packed_attention, so the recomputation re-enters the per-segment attention the forward used."""
    layout, cfgs = _LAYOUT.get(), _CONFIGS.get()
    if layout is None:
        return contextlib.nullcontext(), contextlib.nullcontext()

    @contextlib.contextmanager
    def again():
        restore = _switch(cfgs, layout)
        try:
            yield
        finally:
            restore()
    return contextlib.nullcontext(), again()


def supported(model) -> bool:
    """T5, Llama and Gemma3 text models (the architectures this is tested on) whose attention goes through the
    interface; Gemma3 without attention-logit soft-capping or bidirectional attention (neither is handled here)."""
    c = model.config
    kind = getattr(c, "model_type", "")
    if kind == "gemma3_text" and (getattr(c, "attn_logit_softcapping", None)
                                  or getattr(c, "use_bidirectional_attention", False)):
        return False
    return kind in {"t5", "llama", "gemma3_text"} and hf_compat.attn_implementation(c) in {"sdpa", "eager", None}
