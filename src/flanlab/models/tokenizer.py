"""Tokenizers. Default: byte-level with ByT5's ids (pad 0, eos 1, unk 2, byte b -> b + 3), so a
checkpoint saved with it is readable by transformers' ByT5Tokenizer. A checkpoint's own tokenizer
is used when the checkpoint directory ships one."""
from __future__ import annotations

import json
from pathlib import Path


class ByteTokenizer:
    pad_id, eos_id, unk_id = 0, 1, 2
    offset = 3  # ids below are the specials; byte b is id b + offset
    vocab_size = 384  # 3 specials + 256 bytes + 125 unused extra ids, as ByT5
    name = "byte"
    bos: list[int] = []  # tokens put before a decoder-only context (none)
    _warned = False  # undecodable ids were reported

    def encode(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        ids = list(ids)
        if not self._warned and any(i >= 259 for i in ids):
            # ByT5's 125 unused extra ids stand for no text: dropped, said once (byte runs that are not yet valid
            # UTF-8 are normal mid-generation, so those are dropped quietly)
            self._warned = True
            import logging
            logging.getLogger("flanlab").info(
                "byte tokenizer: the model generated ids past the 256 bytes (ByT5's unused extra ids, e.g. %s); they "
                "stand for no text and are dropped (said once per tokenizer)", [i for i in ids if i >= 259][:5])
        return bytes(i - self.offset for i in ids if self.offset <= i < 256 + self.offset).decode("utf-8", errors="ignore")

    def chat_prompt(self, text: str) -> str:
        from ..errors import FlanlabError
        raise FlanlabError("the byte-level tokenizer has no chat template", field="chat_template")

    def save(self, path: str | Path) -> None:
        from transformers import ByT5Tokenizer
        ByT5Tokenizer(extra_ids=125).save_pretrained(str(path))


class HFTokenizer:
    """Adapter around a transformers tokenizer (a checkpoint's own)."""

    def __init__(self, tok):
        self.tok = tok
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else self.pad_id
        self.vocab_size = len(tok)
        self.name = type(tok).__name__
        # what the tokenizer puts before a text by default (a BOS for Llama-3-style tokenizers, nothing for
        # SmolLM2): decoder-only contexts start with it, as from_pretrained users and lm-eval encode them
        plain = tok.encode("x", add_special_tokens=False)
        full = tok.encode("x")
        self.bos = full[: full.index(plain[0])] if plain and plain[0] in full else []

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Like encode on each, in one call: a fast tokenizer encodes a list on all cores (MMLU's 70k strings in
        half the time of one-by-one calls on 2 cores)."""
        if not texts:
            return []
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def chat_prompt(self, text: str) -> str:
        """`text` as one user turn of the tokenizer's chat template, ready for the assistant's answer."""
        if not getattr(self.tok, "chat_template", None):
            from ..errors import FlanlabError
            raise FlanlabError(f"the tokenizer ({self.name}) has no chat template", field="chat_template")
        return self.tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                            add_generation_prompt=True)

    def save(self, path: str | Path) -> None:
        self.tok.save_pretrained(str(path))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_tokenizer(path: str | Path | None):
    if path is None:
        return ByteTokenizer()
    p = Path(path)
    cfg = p / "tokenizer_config.json"
    if cfg.is_file():
        if json.loads(cfg.read_text()).get("tokenizer_class") == "ByT5Tokenizer":
            return ByteTokenizer()
    elif p.is_dir() and not any((p / f).is_file() for f in TOKENIZER_FILES):
        vocab = _vocab_size(p)
        if vocab is not None and vocab != ByteTokenizer.vocab_size:  # not one of flanlab's byte-level models
            from ..errors import FlanlabError
            raise FlanlabError(f"checkpoint has no tokenizer (no tokenizer_config.json or tokenizer.json) and its "
                               f"vocabulary of {vocab} is not the byte-level one ({ByteTokenizer.vocab_size}); "
                               "copy the tokenizer files of the model it came from into this directory",
                               file=p, field="tokenizer")
        return ByteTokenizer()  # flanlab's byte-level checkpoints
    from transformers import AutoTokenizer
    return HFTokenizer(AutoTokenizer.from_pretrained(str(path)))


def _vocab_size(path: Path) -> int | None:
    try:
        return int(json.loads((path / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
