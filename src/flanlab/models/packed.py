"""Running packed batches: several examples in one row with attention isolated between them.

Encoder-decoder (T5): encoder self-attention, decoder causal self-attention and cross-attention are
all isolated by segment; the decoder input restarts with the decoder start token at each segment.
T5's relative position bias only sees distances, which are the same inside a packed segment as
unpacked. Decoder-only: block-diagonal causal attention and position ids that restart at 0 in every
segment. Loss is on target tokens only.

Two ways to run a packed batch, giving the same logits, loss and gradients (tested):
- per-segment (segment_attention=True, default for T5, Llama and Gemma3): the rows' padding is dropped, the model
  runs on one unpadded token stream, and attention is computed per segment (segattn) - no compute on
  padding or on the masked-out blocks between segments (sliding windows applied inside each segment);
- dense (segment_attention=False, and any other architecture): the [B, L] rows with additive 4D segment
  masks through the model's own backbone; models with sliding-window layers (Gemma2/3: `layer_types`) get a
  second mask that also limits each query to the window, one mask per layer type.
Either way a decoder-only loss runs the LM head (and any final logit soft-capping) on target positions only:
with a 262k vocabulary (Gemma3) the logits of every position would be gigabytes.
Used by training (loss) and by evaluation (log-likelihood of encoder-decoder models).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import hf_compat, segattn
from .build import base_model

IGNORE = -100


@dataclass
class Tokenized:
    inputs: list[int]
    targets: list[int]  # ends with eos


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


def segment_masks(batch: dict, dtype=torch.float32, sliding_window: int | None = None) -> dict:
    """Additive [B, 1, L, L] masks isolating segments: "enc"/"dec"/"cross" (T5) or "self" (decoder-only; with
    `sliding_window`, also "sliding": a query sees keys at most sliding_window - 1 positions back, as HF's
    sliding-window layers do)."""
    if "enc_seg" in batch:
        e, d = batch["enc_seg"], batch["dec_seg"]
        enc = (e[:, :, None] == e[:, None, :]) & (e[:, None, :] > 0)
        causal = torch.ones(d.shape[1], d.shape[1], dtype=torch.bool).tril()
        dec = (d[:, :, None] == d[:, None, :]) & (d[:, None, :] > 0) & causal
        cross = (d[:, :, None] == e[:, None, :]) & (e[:, None, :] > 0)
        return {"enc": _additive(enc, dtype), "dec": _additive(dec, dtype), "cross": _additive(cross, dtype)}
    s = batch["seg"]
    causal = torch.ones(s.shape[1], s.shape[1], dtype=torch.bool).tril()
    allowed = (s[:, :, None] == s[:, None, :]) & (s[:, None, :] > 0) & causal
    masks = {"self": _additive(allowed, dtype)}
    if sliding_window:
        window = torch.ones(s.shape[1], s.shape[1], dtype=torch.bool).triu(-(sliding_window - 1))
        masks["sliding"] = _additive(allowed & window, dtype)
    return masks


def _sliding_window(base) -> int | None:
    """The window of a model whose layers include sliding-window attention, else None."""
    if "sliding_attention" in (getattr(base.config, "layer_types", None) or ()):
        return base.config.sliding_window
    return None


def _dense_decoder_hidden(base, batch: dict, dtype) -> torch.Tensor:
    """Final hidden states [B, L, d] of a decoder-only model on padded packed rows, through its own backbone with
    segment masks (a mask per layer type when it has sliding-window layers)."""
    masks = {k: v.to(batch["seg"].device) for k, v in segment_masks(batch, dtype, _sliding_window(base)).items()}
    mask = ({"full_attention": masks["self"], "sliding_attention": masks["sliding"]} if "sliding" in masks
            else masks["self"])
    backbone = getattr(base, base.base_model_prefix)
    return backbone(input_ids=batch["input_ids"], attention_mask=mask,
                    position_ids=batch["position_ids"]).last_hidden_state


def lm_head(base, h: torch.Tensor) -> torch.Tensor:
    """Logits from final hidden states as the model's own forward makes them (final soft-capping: Gemma2)."""
    logits = base.lm_head(h)
    cap = getattr(base.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


class PackedForward(torch.nn.Module):
    """nn.Module wrapper so DistributedDataParallel sees the packed forward; returns the summed target loss."""

    def __init__(self, model, segment_attention: bool = True, kernel: str = "auto"):
        super().__init__()
        self.model, self.segment_attention, self.kernel = model, segment_attention, kernel

    def forward(self, batch: dict) -> torch.Tensor:
        return _loss_sum(self.model, batch, self.segment_attention, self.kernel)


def _use_segments(base, segment_attention: bool) -> bool:
    return segment_attention and segattn.supported(base)


def _flat(batch: dict, seg_key: str, keys: tuple[str, ...]) -> tuple[dict, torch.Tensor]:
    """Drop padding: [B, L] tensors -> [1, T] with the rows' tokens one after another and segment ids made
    unique across rows. Returns the flat tensors and the [B, L] mask of kept positions."""
    seg = batch[seg_key]
    keep = seg > 0
    uid = (torch.arange(seg.shape[0], device=seg.device)[:, None] * (int(seg.max()) + 1) + seg)[keep]
    return {seg_key: uid[None], **{k: batch[k][keep][None] for k in keys}}, keep


def _segment_hidden(base, batch: dict, kernel: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final hidden states of the non-pad output positions, computed on the unpadded token stream with
    per-segment attention: ([T, d], their labels [T], the [B, L] mask of those positions)."""
    dtype = next(base.parameters()).dtype
    if base.config.is_encoder_decoder:
        enc, _ = _flat(batch, "enc_seg", ("input_ids",))
        dec, keep = _flat(batch, "dec_seg", ("decoder_input_ids", "labels"))
        layout = segattn.layout_for({"enc_seg": enc["enc_seg"], "dec_seg": dec["dec_seg"]}, dtype,
                                    enc["enc_seg"].device, kernel)
        with segattn.packed_attention(base, layout):
            e = _t5_stack(base.encoder, enc["input_ids"], layout["enc"].max_len)
            h = _t5_stack(base.decoder, dec["decoder_input_ids"], layout["dec"].max_len, e)
        return _scale_decoder_output(base, h)[0], dec["labels"][0], keep
    flat, keep = _flat(batch, "seg", ("input_ids", "position_ids", "labels"))
    layout = segattn.layout_for({"seg": flat["seg"]}, dtype, flat["seg"].device, kernel)
    unread = torch.zeros(1, 1, 1, 1, dtype=dtype, device=flat["seg"].device)  # a 4D mask is passed through, not rebuilt
    with segattn.packed_attention(base, layout):
        h = base.model(input_ids=flat["input_ids"], attention_mask=unread,
                       position_ids=flat["position_ids"]).last_hidden_state
    return h[0], flat["labels"][0], keep


def _scale_decoder_output(base, h: torch.Tensor) -> torch.Tensor:
    """T5 with a tied head (v1.0) scales the decoder output by d_model^-0.5 before the LM head, as HF does."""
    if getattr(base.config, "scale_decoder_outputs", base.config.tie_word_embeddings):
        return h * (base.config.d_model ** -0.5)
    return h


def _t5_stack(stack, ids: torch.Tensor, max_len: int, encoder_hidden: torch.Tensor | None = None) -> torch.Tensor:
    """T5Stack.forward on a flat token stream, with the relative position bias computed once for the longest
    segment (segattn slices it per bucket) instead of for the whole stream."""
    h = stack.dropout(stack.embed_tokens(ids))
    bias = hf_compat.t5_relative_bias(stack, max_len, max_len, ids.device)
    cross_bias = segattn.ZERO_BIAS if encoder_hidden is not None else None
    for block in stack.block:
        h = hf_compat.t5_block(block, h, bias, encoder_hidden, cross_bias)
    return stack.dropout(stack.final_layer_norm(h))


def forward_logits(model, batch: dict, segment_attention: bool = True, kernel: str = "auto") -> torch.Tensor:
    """Logits [B, L, V] for a (packed) batch with segment-isolated attention (positions outside any target /
    segment are 0 on the per-segment path). Works for plain HF models and peft-wrapped ones."""
    base = base_model(model)
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    batch = {k: v.to(dev) for k, v in batch.items()}
    if _use_segments(base, segment_attention):
        h, _, keep = _segment_hidden(base, batch, kernel)
        logits = lm_head(base, h)
        out = logits.new_zeros(*keep.shape, logits.shape[-1])
        out[keep] = logits
        return out
    if not base.config.is_encoder_decoder:
        return lm_head(base, _dense_decoder_hidden(base, batch, dtype))
    masks = {k: v.to(dev) for k, v in segment_masks(batch, dtype).items()}
    enc = base.encoder(input_ids=batch["input_ids"], attention_mask=masks["enc"]).last_hidden_state
    h = base.decoder(input_ids=batch["decoder_input_ids"], attention_mask=masks["dec"], encoder_hidden_states=enc,
                     encoder_attention_mask=masks["cross"]).last_hidden_state
    return base.lm_head(_scale_decoder_output(base, h))


def _loss_sum(model, batch: dict, segment_attention: bool = True, kernel: str = "auto") -> torch.Tensor:
    base = base_model(model)
    dev = next(model.parameters()).device
    if base.config.is_encoder_decoder and not _use_segments(base, segment_attention):
        logits = forward_logits(model, batch, segment_attention)
        labels = batch["labels"].to(logits.device)
        return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1),
                                                 ignore_index=IGNORE, reduction="sum")
    batch = {k: v.to(dev) for k, v in batch.items()}
    if _use_segments(base, segment_attention):
        h, labels, _ = _segment_hidden(base, batch, kernel)
    else:
        h, labels = _dense_decoder_hidden(base, batch, next(model.parameters()).dtype), batch["labels"]
    sel = labels != IGNORE  # the LM head runs on target positions only
    return target_loss(base, h[sel], labels[sel])


# logits elements (targets x vocabulary) above which the loss is computed in chunks of target positions, each chunk's
# logits recomputed in the backward pass instead of kept: 2^27 fp32 logits are 512 MB (Gemma3's 262k vocabulary
# reaches it at 512 targets; SmolLM2's 49k at 2,731)
CHUNKED_LOSS_ELEMENTS = 1 << 27


def target_loss(base, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the target positions' hidden states [N, d] against labels [N]."""
    vocab = base.lm_head.out_features

    def chunk_loss(hh, ll):
        return torch.nn.functional.cross_entropy(lm_head(base, hh).float(), ll, reduction="sum")
    if h.shape[0] * vocab <= CHUNKED_LOSS_ELEMENTS:
        return chunk_loss(h, labels)
    step = max(1, CHUNKED_LOSS_ELEMENTS // vocab)
    from torch.utils.checkpoint import checkpoint
    return sum(checkpoint(chunk_loss, h[i:i + step], labels[i:i + step], use_reentrant=False)
               for i in range(0, h.shape[0], step))


def loss_sum(model, batch: dict, segment_attention: bool = True, kernel: str = "auto") -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over target tokens, and their count. `model` may be a PackedForward (inside DDP),
    which carries its own segment_attention."""
    inner = model.module if hasattr(model, "module") and isinstance(model.module, PackedForward) else model
    ls = model(batch) if isinstance(inner, PackedForward) else _loss_sum(model, batch, segment_attention, kernel)
    return ls, int((batch["labels"] != IGNORE).sum())
