import pytest
import torch

from flanlab.errors import FlanlabError


def test_checkpoint_with_its_own_tokenizer(tmp_path):
    """A local HF checkpoint directory with a (locally trained) BPE tokenizer: loaded with from_pretrained,
    trained on a mixture with the checkpoint's tokenizer, and decoded by the eval engine."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from flanlab.evaluate.engine import Engine, GenRequest
    from flanlab.mixture import MixConfig, build_mixture
    from flanlab.models.build import ModelSpec, build_config, build_model
    from flanlab.models.tokenizer import HFTokenizer
    from flanlab.train.trainer import TrainConfig, train
    from transformers import LlamaForCausalLM

    build_mixture(MixConfig(total_examples=400, output=str(tmp_path / "mix")), progress=False)
    from flanlab.mixture import read_mixture
    texts = [r["inputs"] + "\n" + r["targets"] for r in read_mixture(tmp_path / "mix")]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    cfg = build_config("llama-1m", vocab_size=len(tok))
    cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = tok.pad_token_id, tok.eos_token_id, None
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")

    model, t = build_model(ModelSpec(checkpoint=str(tmp_path / "ckpt"), preset=None))
    assert isinstance(t, HFTokenizer) and t.vocab_size == len(tok) and t.eos_id == tok.eos_token_id
    s = train(TrainConfig(mixture=str(tmp_path / "mix"), output=str(tmp_path / "t"), steps=3, batch_size=4, tensorboard=False,
                          model=ModelSpec(checkpoint=str(tmp_path / "ckpt"), preset=None)), progress=False)
    assert s["steps"] == 3
    assert (tmp_path / "t" / "final" / "tokenizer.json").is_file()  # the checkpoint's tokenizer travels with the model
    m2, t2 = build_model(ModelSpec(checkpoint=str(tmp_path / "t" / "final"), preset=None))
    m2.config.use_cache = True
    out = Engine(m2, t2).generate([GenRequest("Is 4 even or odd?", max_new_tokens=5)])
    assert isinstance(out[0][0], str)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from flanlab.models.build import ModelSpec, build_model
    with pytest.raises(FlanlabError) as ei:
        build_model(ModelSpec(checkpoint=str(tmp_path / "nope"), preset=None))
    assert ei.value.field == "model.checkpoint" and "nope" in ei.value.file
