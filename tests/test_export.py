"""A finetuned model in the forms other tools load: PEFT adapter and merged model (fp32 / bf16), model card, Hub."""
import json

import pytest
import torch

from flanlab.errors import FlanlabError


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A LoRA finetune of a small local HF checkpoint (with its own BPE tokenizer): 4 steps."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
    from flanlab.mixture import MixConfig, build_mixture, read_mixture
    from flanlab.models.build import LoraSpec, ModelSpec, build_config
    from flanlab.train.trainer import TrainConfig, train
    tmp = tmp_path_factory.mktemp("export")
    build_mixture(MixConfig(total_examples=300, output=str(tmp / "mix")), progress=False)
    texts = [r["inputs"] + "\n" + r["targets"] for r in read_mixture(tmp / "mix")]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    cfg = build_config("llama-1m", vocab_size=len(tok))
    cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = tok.pad_token_id, tok.eos_token_id, None
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp / "base")
    tok.save_pretrained(tmp / "base")
    train(TrainConfig(mixture=str(tmp / "mix"), output=str(tmp / "t"), steps=4, batch_size=4, lr=0.05,
                      tensorboard=False, optimizer="adamw",
                      model=ModelSpec(checkpoint=str(tmp / "base"), preset=None, lora=LoraSpec(r=4))), progress=False)
    return tmp


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_adapter_and_merged_load_in_peft_and_transformers_with_flanlabs_logits(lora_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from flanlab.models.build import ModelSpec, build_model
    from flanlab.train.export import export
    final = lora_run / "t" / "final"
    assert (final / "adapter" / "adapter_model.safetensors").is_file() and (final / "README.md").is_file()
    card = (final / "README.md").read_text()
    assert "base model" in card and "4 steps" in card and "examples from" in card
    ours, _ = build_model(ModelSpec(checkpoint=str(final), preset=None))
    ids = [torch.tensor([[5, 17, 42, 99, 7, 3]]), torch.tensor([[11, 12, 13]]), torch.tensor([[200, 1, 2, 3, 4]])]
    want = [_logits(ours.eval(), i) for i in ids]
    r32 = export(lora_run / "t", tmp_path / "fp32", dtype="fp32")
    r16 = export(lora_run / "t", tmp_path / "bf16", dtype="bf16", adapter=False)
    base = AutoModelForCausalLM.from_pretrained(str(lora_run / "base")).eval()
    peft = PeftModel.from_pretrained(base, str(tmp_path / "fp32" / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "fp32")).eval()
    for i, w in zip(ids, want):
        assert (_logits(peft, i) - w).abs().max() < 1e-4  # the adapter is the exact result
        assert (_logits(merged, i) - w).abs().max() < 1e-4
    bf16 = AutoModelForCausalLM.from_pretrained(str(tmp_path / "bf16"))
    assert next(bf16.parameters()).dtype == torch.bfloat16
    b32, b16 = r32["files"]["merged"]["bytes"], r16["files"]["merged"]["bytes"]
    assert 0.45 < b16 / b32 < 0.55, (b16, b32)
    assert r32["merged_vs_adapter"]["max_abs_logit_diff"] < 1e-3
    assert r16["merged_vs_adapter"]["max_abs_logit_diff"] > r32["merged_vs_adapter"]["max_abs_logit_diff"]
    assert "This export" in (tmp_path / "bf16" / "README.md").read_text()
    print(json.dumps({"fp32": r32, "bf16": r16}, indent=1))


def test_export_refuses_a_non_empty_destination_and_an_offline_push_is_one_line(lora_run, tmp_path, monkeypatch):
    from flanlab.train.export import export, push_to_hub
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    with pytest.raises(FlanlabError, match="not empty"):
        export(lora_run / "t", tmp_path / "x")
    assert (tmp_path / "x" / "keep").read_text() == "mine"
    with pytest.raises(FlanlabError, match="no finished training"):
        export(tmp_path, tmp_path / "y")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    with pytest.raises(FlanlabError) as ei:
        push_to_hub(tmp_path / "x", "someone/flan-model")
    assert "someone/flan-model" in ei.value.message and "\n" not in ei.value.message


def test_chat_template_training_wraps_inputs_as_a_user_turn_and_scores_the_assistant_turn(lora_run, tmp_path):
    """The same wrapping as `chat_template: true` evaluation; loss on the assistant turn only; a tokenizer without
    a template is refused by name."""
    from flanlab.models.tokenizer import ByteTokenizer, load_tokenizer
    from flanlab.train.packing import tokenize_pair
    tok = load_tokenizer(lora_run / "base")
    tok.tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                             "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ex = tokenize_pair(tok, "Name a prime.", "7", 256, 64, False, chat=True)
    rendered = tok.chat_prompt("Name a prime.")  # what `chat_template: true` evaluation prompts with
    assert rendered == "<|user|>Name a prime.</s><|assistant|>"
    assert ex.inputs == tok.bos + tok.encode(rendered)
    assert ex.targets == tok.encode("7") + [tok.eos_id]  # the loss is on these tokens only (packing keeps that)
    plain = tokenize_pair(tok, "Name a prime.", "7", 256, 64, False)
    assert plain.inputs != ex.inputs and plain.targets == ex.targets
    with pytest.raises(FlanlabError, match="no chat template"):
        tokenize_pair(ByteTokenizer(), "x", "y", 64, 64, False, chat=True)
    from flanlab.train.trainer import TrainConfig, config_fingerprint
    assert config_fingerprint(TrainConfig(chat_template=True)) != config_fingerprint(TrainConfig())
