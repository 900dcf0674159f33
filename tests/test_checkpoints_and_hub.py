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


def fake_hub(repo, config, split):
    if repo == "cais/mmlu":
        return [{"question": f"{config} q{i}?", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(5)]
    if repo == "lukaemon/bbh":
        return [{"input": f"{config} {i}", "target": "True"} for i in range(4)]
    if repo == "juletxara/mgsm":
        return [{"question": f"{config}: 1+{i}?", "answer_number": 1 + i} for i in range(3)]
    if repo == "openai/gsm8k":
        return [{"question": "2+2?", "answer": "2+2=4\n#### 4"}]
    if repo == "google-research-datasets/tydiqa":
        return [{"id": f"english-{split}-{i}", "context": "Paris is in France.", "question": "Where is Paris?",
                 "answers": {"text": ["France"], "answer_start": [12]}} for i in range(2)]
    raise ValueError(repo)


def test_hub_download_writes_upstream_layout(tmp_path):
    from flanlab.evaluate.benchmarks import load_bbh, load_gsm8k, load_mgsm, load_mmlu, load_tydiqa
    from flanlab.evaluate.hub import fetch
    m = load_mmlu(fetch("mmlu", tmp_path / "mmlu", configs=["anatomy"], loader=fake_hub))
    assert len(m.items) == 5 and m.items[1].golds == ["B"] and "anatomy q0?\nA. w" in m.items[0].prompts["direct"]
    b = load_bbh(fetch("bbh", tmp_path / "bbh", configs=["toy_task"], loader=fake_hub), shots=1)
    assert len(b.items) == 3  # one example used as the direct exemplar
    assert [i.golds for i in load_mgsm(fetch("mgsm", tmp_path / "mgsm", configs=["de"], loader=fake_hub)).items] == [["1"], ["2"], ["3"]]
    assert load_gsm8k(fetch("gsm8k", tmp_path / "g", loader=fake_hub)).items[0].golds == ["4"]
    t = load_tydiqa(fetch("tydiqa", tmp_path / "ty", loader=fake_hub))
    assert len(t.items) == 2 and "Paris is in France." in t.items[0].prompts["direct"]
    assert (tmp_path / "ty" / ".complete").is_file()


def test_hub_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from flanlab.evaluate.hub import fetch
    with pytest.raises(FlanlabError, match="from the hub"):
        fetch("gsm8k", tmp_path / "g")
    assert not (tmp_path / "g" / ".complete").exists()


def test_eval_without_path_offline_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from flanlab.evaluate.harness import BenchmarkSpec, EvalConfig, run_eval
    cfg = EvalConfig(preset="t5-1m", output=str(tmp_path / "e"), hub_cache=str(tmp_path / "hub"),
                     benchmarks=[BenchmarkSpec(name="gsm8k", modes=["cot"])])
    with pytest.raises(FlanlabError, match="fetching openai/gsm8k failed") as ei:
        run_eval(cfg, file="eval.yaml")
    assert ei.value.field == "benchmarks[0].path" and ei.value.file == "eval.yaml"
