"""Packing training examples into rows: tokenization with truncation, and deterministic first-fit packing.
How a packed row is run (masks, per-segment attention, loss on targets only) is models/packed.py's concern."""
from __future__ import annotations

from ..formats import TARGET_DELIMITER
from ..models.packed import Tokenized


def tokenize_pair(tok, inputs: str, targets: str, max_input_len: int, max_target_len: int,
                  encoder_decoder: bool, chat: bool = False) -> Tokenized:
    """Inputs keep their end (the query sits last in few-shot prompts); targets keep their start. `chat`: the inputs
    are one user turn of the tokenizer's chat template and the target is the assistant's turn, ended by the
    tokenizer's eos (a chat model's end-of-turn token) - what `chat_template: true` evaluation prompts."""
    if encoder_decoder:
        inp = tok.encode(inputs)[-(max_input_len - 1):] + [tok.eos_id]
    elif chat:
        inp = tok.bos + tok.encode(tok.chat_prompt(inputs))[-(max_input_len - len(tok.bos)):]
    else:  # the context as evaluation builds it: the tokenizer's BOS (if any), inputs, the format's delimiter
        inp = tok.bos + tok.encode(inputs + TARGET_DELIMITER)[-(max_input_len - len(tok.bos)):]
    tgt = tok.encode(targets)[: max_target_len - 1] + [tok.eos_id]
    return Tokenized(inp, tgt)


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
                used[r] = (a + len(ex.inputs),
                           b + len(ex.targets)) if encoder_decoder else (a + len(ex.inputs) + len(ex.targets), 0)
                placed = True
                break
        if not placed:
            rows.append([ex])
            used.append((len(ex.inputs), len(ex.targets)) if encoder_decoder else (len(ex.inputs) + len(ex.targets), 0))
    return rows
