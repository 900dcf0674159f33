"""models/hf_compat.py against the installed transformers: every internal it relies on still behaves as used."""
import torch

from flanlab.models import hf_compat
from flanlab.models.build import ModelSpec, build_model


def test_installed_transformers_is_in_the_tested_range():
    assert hf_compat.TESTED[0] <= hf_compat.transformers_version() < hf_compat.TESTED[1]
    assert hf_compat.check_version()


def test_switching_the_attention_implementation_routes_attention_through_a_registered_function():
    model, _ = build_model(ModelSpec(preset="llama-1m"), seed=0)
    model.eval()
    calls = []

    def counting(module, query, key, value, attention_mask, **kw):
        calls.append(query.shape)
        return hf_compat.sdpa_attention(module, query, key, value, attention_mask, **kw)
    hf_compat.register_attention("flanlab_test_counting", counting)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        ref = model(ids).logits
        cfgs = hf_compat.configs_with_attention(model)
        old = [hf_compat.attn_implementation(c) for c in cfgs]
        for c in cfgs:
            hf_compat.set_attn_implementation(c, "flanlab_test_counting")
        out = model(ids).logits
        for c, o in zip(cfgs, old):
            hf_compat.set_attn_implementation(c, o)
        model(ids)
    assert len(calls) == model.config.num_hidden_layers  # once per layer, and not after restoring
    assert torch.allclose(out, ref, atol=1e-6)  # the SDPA function it wraps computes the same


def test_t5_block_calls_match_the_stacks_own_forward():
    model, _ = build_model(ModelSpec(preset="t5-1m"), seed=0)
    model.eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 1]])
    dec_ids = torch.tensor([[0, 11, 12]])
    assert len(hf_compat.configs_with_attention(model)) >= 1
    with torch.no_grad():
        enc_ref = model.encoder(input_ids=ids).last_hidden_state
        dec_ref = model.decoder(input_ids=dec_ids, encoder_hidden_states=enc_ref).last_hidden_state
        h = model.encoder.embed_tokens(ids)
        bias = hf_compat.t5_relative_bias(model.encoder, 6, 6, ids.device)
        for block in model.encoder.block:
            h = hf_compat.t5_block(block, h, bias)
        enc = model.encoder.final_layer_norm(h)
        d = model.decoder.embed_tokens(dec_ids)
        causal = torch.full((3, 3), torch.finfo(d.dtype).min).triu(1)
        dbias = hf_compat.t5_relative_bias(model.decoder, 3, 3, ids.device) + causal
        for block in model.decoder.block:
            d = hf_compat.t5_block(block, d, dbias, enc, torch.zeros(1, 1, 3, 6))
        dec = model.decoder.final_layer_norm(d)
    assert torch.allclose(enc, enc_ref, atol=1e-5) and torch.allclose(dec, dec_ref, atol=1e-5)
