"""A full disk (ENOSPC) or a failing write (EIO) at the k-th write of a checkpoint, a mixture shard or an eval cache
line: one line naming the file, exit 2, the previous state still loads, and the run resumes once space is back to
the same result as an uninterrupted one."""
import errno
import json

import pytest
import torch
from safetensors.torch import load_file

from test_cli import cli, write


class Disk:
    """Fails the k-th call of a writing function with `err` (k counted from 1), then lets every later call through
    unless `persist` (the disk stays full)."""
    def __init__(self, real, k, err=errno.ENOSPC, persist=True):
        self.real, self.k, self.err, self.persist, self.calls = real, k, err, persist, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.calls == self.k or (self.persist and self.calls > self.k):
            raise OSError(self.err, "No space left on device" if self.err == errno.ENOSPC else "Input/output error")
        return self.real(*a, **kw)


def _train_cfg(tmp_path, mixture, out):
    return write(tmp_path / f"{out.name}.yaml", json.dumps({"train": {
        "mixture": str(mixture), "output": str(out), "steps": 8, "batch_size": 4, "save_every": 2, "log_every": 1,
        "model": {"preset": "t5-0.5m"}, "tensorboard": False, "optimizer": "adamw", "lr": 0.01}}))


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    from flanlab.mixture import MixConfig, build_mixture
    out = tmp_path_factory.mktemp("mix") / "m"
    build_mixture(MixConfig(total_examples=400, output=str(out)), progress=False)
    return out


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_resumes_to_the_same_weights(
        mixture, tmp_path, monkeypatch, err):
    from flanlab.train import safe_state
    code, text = cli("train", _train_cfg(tmp_path, mixture, tmp_path / "ref"))
    assert code == 0, text
    disk = Disk(safe_state.save_file, k=3, err=err)  # the third checkpoint's trainer state (step 6)
    monkeypatch.setattr(safe_state, "save_file", disk)
    cfg = _train_cfg(tmp_path, mixture, tmp_path / "full")
    code, text = cli("train", cfg)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "trainer_state.safetensors" in errors[0] and "Traceback" not in text, text
    assert ("no space left" if err == errno.ENOSPC else "input/output") in errors[0]
    out = tmp_path / "full"
    assert (out / "latest").read_text() == "checkpoint-4" and not list(out.glob(".tmp-*"))
    monkeypatch.setattr(safe_state, "save_file", disk.real)  # space is back
    code, text = cli("train", cfg)
    assert code == 0, text
    a = load_file(str(tmp_path / "ref" / "final" / "model.safetensors"))
    b = load_file(str(out / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_while_writing_a_mixture_keeps_the_previous_mixture(tmp_path, monkeypatch):
    from flanlab.mixture import mix
    cfg = write(tmp_path / "m.yaml", f"mix:\n  total_examples: 3000\n  shard_size: 500\n  output: {tmp_path / 'mx'}\n")
    code, text = cli("mix", cfg, "--no-progress")
    assert code == 0, text
    before = {p.name: p.read_bytes() for p in (tmp_path / "mx").iterdir()}
    monkeypatch.setattr(mix, "_write_shard_file", Disk(mix._write_shard_file, k=3))
    code, text = cli("mix", cfg, "total_examples=2500", "--overwrite", "--no-progress")
    assert code == 2 and "shard" in text and "no space left" in text and "Traceback" not in text, text
    assert {p.name: p.read_bytes() for p in (tmp_path / "mx").iterdir()} == before  # the old mixture, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mx")] == []  # no partial left behind


def test_a_full_disk_while_appending_answers_then_the_evaluation_resumes_to_the_same_predictions(
        tmp_path, monkeypatch):
    from flanlab.evaluate import answer_cache
    ev = "eval:\n  preset: t5-0.5m\n  batch_tokens: 2048\n  benchmarks: [{name: synthetic, subsets: [held_out], limit: 6}]\n"
    cfg = write(tmp_path / "e.yaml", ev)
    code, text = cli("eval", cfg, "-o", tmp_path / "ref")
    assert code == 0, text
    monkeypatch.setattr(answer_cache.os, "fsync", Disk(answer_cache.os.fsync, k=2, persist=False))
    code, text = cli("eval", cfg, "-o", tmp_path / "full")
    assert code == 2 and "cache.jsonl" in text and "no space left" in text and "Traceback" not in text, text
    kept = (tmp_path / "full" / "cache.jsonl").read_text().splitlines()
    assert 0 < len(kept) < len((tmp_path / "ref" / "cache.jsonl").read_text().splitlines())
    monkeypatch.undo()
    code, text = cli("eval", cfg, "-o", tmp_path / "full")
    assert code == 0, text
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in p.read_text().splitlines()]  # noqa: E731
    assert strip(tmp_path / "full" / "predictions.jsonl") == strip(tmp_path / "ref" / "predictions.jsonl")
