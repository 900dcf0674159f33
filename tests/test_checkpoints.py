import pytest
import torch

from flanlab.errors import FlanlabError


def test_checkpoint_with_its_own_tokenizer(tmp_path):
    """A local HF checkpoint directory with a (locally trained) BPE tokenizer: loaded with from_pretrained,
    trained on a mixture with the checkpoint's tokenizer, and decoded by the eval engine."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from flanlab.evaluate.engine import Engine
    from flanlab.evaluate.requests import GenRequest
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
                          model=ModelSpec(checkpoint=str(tmp_path / "ckpt"), preset=None)), progress=False).summary
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


class _Payload:
    """Unpickling this runs code: it writes a file (what a hostile checkpoint would do, harmlessly)."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _store_with_checkpoint(tmp_path):
    from flanlab.models.build import ModelSpec, build_model
    from flanlab.train.checkpoints import CheckpointStore, rng_state
    model, tok = build_model(ModelSpec(preset="t5-0.5m"), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(**{k: torch.ones(1, 4, dtype=torch.long) for k in ("input_ids", "labels")}).loss.backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    store = CheckpointStore(tmp_path / "run", keep=2, fingerprint="fp")
    return store, store.save(3, model, tok, opt, sched, [rng_state()]), (model, opt, sched)


def test_a_pickled_trainer_state_is_refused_and_never_unpickled(tmp_path):
    import pickle
    store, ckpt, (model, opt, sched) = _store_with_checkpoint(tmp_path)
    assert not list(ckpt.glob("*.pt"))  # flanlab writes no pickle
    marker = tmp_path / "owned"
    (ckpt / "trainer_state.json").unlink()
    (ckpt / "trainer_state.safetensors").unlink()
    (ckpt / "trainer_state.pt").write_bytes(pickle.dumps({"step": 3, "x": _Payload(marker)}))
    pickle.loads((ckpt / "trainer_state.pt").read_bytes())  # the payload is live: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    assert store.latest() == ckpt
    with pytest.raises(FlanlabError) as ei:
        store.restore(ckpt, model, opt, sched, 0, file="t.yaml")
    assert "pickle" in ei.value.message and "trainer_state.pt" in ei.value.message
    assert not marker.exists()


def test_trainer_state_round_trips_exactly_and_a_truncated_one_is_named(tmp_path):
    import random
    import numpy as np
    store, ckpt, (model, opt, sched) = _store_with_checkpoint(tmp_path)
    before = {k: {n: t.clone() for n, t in v.items()} for k, v in opt.state_dict()["state"].items()}
    random.random(), np.random.rand(), torch.rand(1)
    for group in opt.state.values():
        for t in group.values():
            t.add_(1.0) if torch.is_floating_point(t) else None
    assert store.restore(ckpt, model, opt, sched, 0, file="t.yaml") == 3
    after = opt.state_dict()["state"]
    assert all(torch.equal(before[k][n], after[k][n]) for k in before for n in before[k])
    blob = ckpt / "trainer_state.safetensors"
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    with pytest.raises(FlanlabError) as ei:
        store.restore(ckpt, model, opt, sched, 0, file="t.yaml")
    assert "corrupt" in ei.value.message and "trainer_state" in str(ei.value.file)


def _dirs(tmp_path):
    old, new = tmp_path / "dest", tmp_path / ".tmp-new"
    old.mkdir(), new.mkdir()
    (old / "f").write_text("old"), (new / "f").write_text("new")
    return old, new


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_publish_killed_between_renames_leaves_the_old_directory_or_the_new(tmp_path, monkeypatch, atomic_swap):
    """A crash inside publish_dir (simulated: the rename that puts the new directory in place fails) must leave
    the destination holding the old directory, after recovery, never nothing."""
    import os
    from flanlab import utils
    if not atomic_swap:
        monkeypatch.setattr(utils, "_exchange", lambda a, b: False)
    dest, tmp = _dirs(tmp_path)
    real = os.rename

    def dies_on_the_new_one(a, b):
        if str(a) == str(tmp):
            raise KeyboardInterrupt("killed")
        return real(a, b)
    monkeypatch.setattr(utils.os, "rename", dies_on_the_new_one)
    try:
        utils.publish_dir(tmp, dest)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(utils.os, "rename", real)
    utils.recover_dir(dest)
    assert (dest / "f").read_text() in ("old", "new")
    dest2, tmp2 = tmp_path / "d2", tmp_path / ".tmp-2"
    tmp2.mkdir(), (tmp2 / "f").write_text("x")
    utils.publish_dir(tmp2, dest2)  # no destination yet: a plain rename
    assert (dest2 / "f").read_text() == "x" and not tmp2.exists()
    tmp3 = tmp_path / ".tmp-3"
    tmp3.mkdir(), (tmp3 / "f").write_text("y")
    utils.publish_dir(tmp3, dest2)  # replace: the new one in place, the old one gone, nothing left aside
    assert (dest2 / "f").read_text() == "y" and not tmp3.exists() and not list(tmp_path.glob(".d2.old-*"))
