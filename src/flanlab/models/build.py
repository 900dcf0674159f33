"""Model presets built from config (no downloads), or any local/hub HF checkpoint."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from pydantic import Field, field_validator

from ..config import StrictModel
from ..errors import FlanlabError
from .checkpoint import resolve_checkpoint
from .tokenizer import ByteTokenizer, load_tokenizer

# name -> (arch, dims). T5 presets follow T5 v1.1 / Flan-T5 (gated-GELU, untied head).
PRESETS = {
    "t5-0.5m": ("t5", dict(d_model=96, d_ff=192, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=24)),
    "t5-1m": ("t5", dict(d_model=128, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=32)),
    "t5-5m": ("t5", dict(d_model=256, d_ff=512, num_layers=3, num_decoder_layers=3, num_heads=4, d_kv=64)),
    "t5-20m": ("t5", dict(d_model=384, d_ff=1024, num_layers=6, num_decoder_layers=6, num_heads=6, d_kv=64)),
    "t5-100m": ("t5", dict(d_model=768, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=12, d_kv=64)),
    "llama-1m": ("llama", dict(hidden_size=128, intermediate_size=344, num_hidden_layers=4, num_attention_heads=4)),
    "llama-5m": ("llama", dict(hidden_size=256, intermediate_size=688, num_hidden_layers=6, num_attention_heads=4)),
    "llama-20m": ("llama", dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=10, num_attention_heads=6)),
    "llama-100m": ("llama", dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=14,
                                 num_attention_heads=12)),
}


class LoraSpec(StrictModel):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None


class ModelSpec(StrictModel):
    preset: str | None = "t5-1m"
    checkpoint: str | None = None  # HF directory, .gguf file, packaged model name (smollm2-135m) or hub name
    dropout: float = Field(0.0, ge=0, lt=1)
    lora: LoraSpec | None = None
    overrides: dict = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v):  # checked with the config, so the error names the file (or the command line)
        if v is not None and v not in PRESETS:
            raise ValueError(unknown_preset(v))
        return v


def unknown_preset(name: str) -> str:
    from ..config import did_you_mean
    return f"unknown preset '{name}'{did_you_mean(name, PRESETS, n=2, cutoff=0.5, otherwise='')}; presets: " \
        f"{', '.join(PRESETS)}"


def base_model(model):
    """The HF model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_encoder_decoder(model) -> bool:
    return bool(base_model(model).config.is_encoder_decoder)


def build_config(preset: str, dropout: float = 0.0, vocab_size: int = ByteTokenizer.vocab_size, **overrides):
    if preset not in PRESETS:
        raise FlanlabError(unknown_preset(preset), field="model.preset")
    arch, dims = PRESETS[preset]
    dims = {**dims, **overrides}
    if arch == "t5":
        from transformers import T5Config
        return T5Config(vocab_size=vocab_size, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                        dropout_rate=dropout, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128, **dims)
    from transformers import LlamaConfig
    dims.setdefault("num_key_value_heads", dims["num_attention_heads"])
    dims.setdefault("tie_word_embeddings", True)
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=4096, attention_dropout=dropout,
                       pad_token_id=0, eos_token_id=1, bos_token_id=2, **dims)


def build_model(spec: ModelSpec, seed: int = 0, field: str = "model.checkpoint"):
    """Returns (model, tokenizer). A checkpoint is resolved (models.checkpoint) and loaded with from_pretrained;
    a preset is initialised from config with `seed`."""
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaForCausalLM,
                              T5ForConditionalGeneration)
    torch.manual_seed(seed)
    if spec.checkpoint:
        path = resolve_checkpoint(spec.checkpoint, field)
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        try:
            cfg = AutoConfig.from_pretrained(path)
            cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
            model = cls.from_pretrained(path, **({"dropout_rate": spec.dropout} if cfg.is_encoder_decoder else {}))
        except (OSError, ValueError) as e:
            raise FlanlabError(f"cannot load checkpoint: {e}", file=spec.checkpoint, field=field) from None
        tok = load_tokenizer(path)
    else:
        cfg = build_config(spec.preset, spec.dropout, **spec.overrides)
        model = (T5ForConditionalGeneration if cfg.model_type == "t5" else LlamaForCausalLM)(cfg)
        # T5's untied head: HF inits it with std 1.0 (meant for pretrained use); start near uniform
        if cfg.model_type == "t5":
            torch.nn.init.normal_(model.lm_head.weight, std=cfg.d_model ** -0.5 * 0.1)
        tok = ByteTokenizer()
    model.config.use_cache = False
    if spec.lora is not None:
        from peft import LoraConfig, get_peft_model
        targets = spec.lora.target_modules or (["q", "v"] if model.config.is_encoder_decoder else ["q_proj", "v_proj"])
        with warnings.catch_warnings():  # peft reads transformers 5's deprecated is_gradient_checkpointing alias
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            model = get_peft_model(model, LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha,
                                                     lora_dropout=spec.lora.dropout, target_modules=targets))
    return model, tok


def fuse_gelu(model) -> int:
    """Swap transformers' NewGELUActivation (T5 v1.1 / Flan-T5 "gelu_new": the tanh approximation written as 8
    elementwise ops) for GELUTanh, the same function in one fused kernel (equal to float rounding). The config and
    saved checkpoints are unchanged. Returns the number of modules swapped."""
    from transformers.activations import GELUTanh, NewGELUActivation
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is NewGELUActivation:
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_pretrained(model, tok, path: str | Path) -> None:
    """HF format (config.json + model.safetensors + tokenizer). LoRA models are merged first."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    m = model
    if hasattr(m, "merge_and_unload"):
        import copy
        # merged in fp32: frozen weights kept in bf16 for training (TrainConfig.frozen_weights) would otherwise round
        # away most of the adapter's small update
        m = copy.deepcopy(m).float().merge_and_unload()
    m.save_pretrained(str(path), safe_serialization=True)
    tok.save(path)
