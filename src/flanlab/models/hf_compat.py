"""The one place flanlab reaches into transformers internals: the attention-implementation switch on a config
(a private attribute), the attention/mask registries, the SDPA attention function, and positional calls into T5
blocks. Each is written against the transformers versions in TESTED (checked once, with a warning outside it);
tests/test_hf_compat.py checks every one against the installed version."""
from __future__ import annotations

import warnings

TESTED = ((5, 20), (6, 0))  # [lowest, first untested) transformers version: the range pyproject.toml allows
_checked = False


def transformers_version() -> tuple[int, int]:
    import transformers
    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_version() -> bool:
    """True if the installed transformers is in the tested range; warns once if not."""
    global _checked
    ok = TESTED[0] <= transformers_version() < TESTED[1]
    if not ok and not _checked:
        import transformers
        warnings.warn(f"flanlab's per-segment attention and T5 stack were tested with transformers "
                      f"{'.'.join(map(str, TESTED[0]))} to <{'.'.join(map(str, TESTED[1]))}; installed: "
                      f"{transformers.__version__}. tests/test_hf_compat.py says whether it still fits.", stacklevel=2)
    _checked = True
    return ok


def attn_implementation(config) -> str | None:
    return getattr(config, "_attn_implementation", None)


def set_attn_implementation(config, name: str | None) -> None:
    """Switch a loaded model's attention function without reloading it (the public setter validates names
    against the built-in ones at load time only)."""
    config._attn_implementation_internal = name


def configs_with_attention(model) -> list:
    """Every distinct config in `model` that selects an attention implementation (T5 has one per stack)."""
    seen, out = set(), []
    for m in model.modules():
        c = getattr(m, "config", None)
        if c is not None and hasattr(c, "_attn_implementation") and id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def register_attention(name: str, fn) -> None:
    """Register `fn` as attention implementation `name`, building its masks as SDPA does."""
    check_version()
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    AttentionInterface.register(name, fn)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)


def sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def t5_block(block, hidden, position_bias, encoder_hidden=None, encoder_position_bias=None):
    """T5Block.forward(hidden_states, attention_mask, position_bias, encoder_hidden_states,
    encoder_attention_mask, encoder_decoder_position_bias): positional, as HF's own T5Stack calls it (so its
    activation checkpointing wrapper passes them on); returns the new hidden states."""
    return block(hidden, None, position_bias, encoder_hidden, None, encoder_position_bias)[0]


def t5_relative_bias(stack, q_len: int, k_len: int, device):
    """The stack's relative position bias [1, heads, q_len, k_len] (held by its first block's self-attention)."""
    return stack.block[0].layer[0].SelfAttention.compute_bias(q_len, k_len, device=device)
