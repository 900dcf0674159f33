"""Packing several examples into one row, with attention isolated between them.

Encoder-decoder (T5): encoder self-attention, decoder causal self-attention and cross-attention are
all masked by segment id; the decoder input restarts with the decoder start token at each segment.
T5's relative position bias only sees distances, which are the same inside a packed segment as
unpacked, and cross-segment pairs are masked.
Decoder-only: block-diagonal causal mask and position ids that restart at 0 in every segment.
Loss is on target tokens only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class Tokenized:
    inputs: list[int]
    targets: list[int]  # ends with eos


def tokenize_pair(tok, inputs: str, targets: str, max_input_len: int, max_target_len: int, encoder_decoder: bool) -> Tokenized:
    """Inputs keep their end (the query sits last in few-shot prompts); targets keep their start."""
    if encoder_decoder:
        inp = tok.encode(inputs)[-(max_input_len - 1):] + [tok.eos_id]
    else:
        inp = tok.encode(lm_prompt(inputs))[-max_input_len:]
    tgt = tok.encode(targets)[: max_target_len - 1] + [tok.eos_id]
    return Tokenized(inp, tgt)


def lm_prompt(inputs: str) -> str:
    """How a decoder-only model sees an input: the target follows after a newline."""
    return inputs + "\n"


def pack(examples: list[Tokenized], encoder_decoder: bool, max_input_len: int, max_target_len: int,
         open_rows: int = 8) -> list[list[Tokenized]]:
    """Deterministic first-fit over the last `open_rows` rows. For decoder-only models a row holds
    max_input_len + max_target_len tokens of input+target."""
    rows: list[list[Tokenized]] = []
    used: list[tuple[int, int]] = []
    lm_len = max_input_len + max_target_len
    for ex in examples:
        placed = False
        for r in range(max(0, len(rows) - open_rows), len(rows)):
            a, b = used[r]
            if encoder_decoder:
                ok = a + len(ex.inputs) <= max_input_len and b + len(ex.targets) <= max_target_len
            else:
                ok = a + len(ex.inputs) + len(ex.targets) <= lm_len
            if ok:
                rows[r].append(ex)
                used[r] = (a + len(ex.inputs), b + len(ex.targets)) if encoder_decoder else (a + len(ex.inputs) + len(ex.targets), 0)
                placed = True
                break
        if not placed:
            rows.append([ex])
            used.append((len(ex.inputs), len(ex.targets)) if encoder_decoder else (len(ex.inputs) + len(ex.targets), 0))
    return rows


def collate(rows: list[list[Tokenized]], encoder_decoder: bool, pad_id: int = 0, decoder_start_id: int = 0) -> dict:
    """Build tensors for packed rows (a row of one example is the unpacked case)."""
    B = len(rows)
    if encoder_decoder:
        Lin = max(sum(len(e.inputs) for e in r) for r in rows)
        Lout = max(sum(len(e.targets) for e in r) for r in rows)
        ids = torch.full((B, Lin), pad_id, dtype=torch.long)
        eseg = torch.zeros((B, Lin), dtype=torch.long)
        dec = torch.full((B, Lout), pad_id, dtype=torch.long)
        dseg = torch.zeros((B, Lout), dtype=torch.long)
        labels = torch.full((B, Lout), IGNORE, dtype=torch.long)
        for b, row in enumerate(rows):
            i = j = 0
            for s, ex in enumerate(row, 1):
                n, m = len(ex.inputs), len(ex.targets)
                ids[b, i:i + n] = torch.tensor(ex.inputs)
                eseg[b, i:i + n] = s
                t = torch.tensor(ex.targets)
                labels[b, j:j + m] = t
                dec[b, j] = decoder_start_id  # restart the decoder in every segment
                dec[b, j + 1:j + m] = t[:-1]
                dseg[b, j:j + m] = s
                i, j = i + n, j + m
        return {"input_ids": ids, "enc_seg": eseg, "decoder_input_ids": dec, "dec_seg": dseg, "labels": labels}
    L = max(sum(len(e.inputs) + len(e.targets) for e in r) for r in rows)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    seg = torch.zeros((B, L), dtype=torch.long)
    pos = torch.zeros((B, L), dtype=torch.long)
    labels = torch.full((B, L), IGNORE, dtype=torch.long)
    for b, row in enumerate(rows):
        i = 0
        for s, ex in enumerate(row, 1):
            seq = ex.inputs + ex.targets
            n, k = len(seq), len(ex.inputs)
            ids[b, i:i + n] = torch.tensor(seq)
            seg[b, i:i + n] = s
            pos[b, i:i + n] = torch.arange(n)
            # position p predicts token p+1; only target tokens are predicted
            labels[b, i + k - 1:i + n - 1] = torch.tensor(ex.targets)
            i += n
    return {"input_ids": ids, "seg": seg, "position_ids": pos, "labels": labels}


def _additive(allowed: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    m = torch.zeros(allowed.shape, dtype=dtype)
    m.masked_fill_(~allowed, torch.finfo(dtype).min)
    return m.unsqueeze(1)  # [B, 1, Q, K]


def segment_masks(batch: dict, dtype=torch.float32) -> dict:
    if "enc_seg" in batch:
        e, d = batch["enc_seg"], batch["dec_seg"]
        enc = (e[:, :, None] == e[:, None, :]) & (e[:, None, :] > 0)
        causal = torch.ones(d.shape[1], d.shape[1], dtype=torch.bool).tril()
        dec = (d[:, :, None] == d[:, None, :]) & (d[:, None, :] > 0) & causal
        cross = (d[:, :, None] == e[:, None, :]) & (e[:, None, :] > 0)
        return {"enc": _additive(enc, dtype), "dec": _additive(dec, dtype), "cross": _additive(cross, dtype)}
    s = batch["seg"]
    causal = torch.ones(s.shape[1], s.shape[1], dtype=torch.bool).tril()
    return {"self": _additive((s[:, :, None] == s[:, None, :]) & (s[:, None, :] > 0) & causal, dtype)}


class PackedForward(torch.nn.Module):
    """nn.Module wrapper so DistributedDataParallel sees the packed forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return forward_logits(self.model, batch)


def forward_logits(model, batch: dict) -> torch.Tensor:
    """Logits for a (packed) batch with segment-isolated attention. Works for plain HF models,
    peft-wrapped ones, and PackedForward (optionally inside DDP)."""
    if isinstance(model, PackedForward) or hasattr(model, "module") and isinstance(model.module, PackedForward):
        return model(batch)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    batch = {k: v.to(dev) for k, v in batch.items()}
    masks = {k: v.to(dev) for k, v in segment_masks(batch, dtype).items()}
    if base.config.is_encoder_decoder:
        enc = base.encoder(input_ids=batch["input_ids"], attention_mask=masks["enc"]).last_hidden_state
        h = base.decoder(input_ids=batch["decoder_input_ids"], attention_mask=masks["dec"], encoder_hidden_states=enc,
                         encoder_attention_mask=masks["cross"]).last_hidden_state
        if getattr(base.config, "scale_decoder_outputs", base.config.tie_word_embeddings):
            h = h * (base.config.d_model ** -0.5)
        return base.lm_head(h)
    return model(input_ids=batch["input_ids"], attention_mask=masks["self"], position_ids=batch["position_ids"]).logits


def loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over target tokens, and their count."""
    logits = forward_logits(model, batch)
    labels = batch["labels"].to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())
