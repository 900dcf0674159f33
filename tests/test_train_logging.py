"""Training metrics beyond metrics.jsonl: Weights & Biases (offline, the real library and files)."""
import json
import sys

import pytest

from flanlab.errors import FlanlabError
from flanlab.mixture import MixConfig, build_mixture
from flanlab.models.build import ModelSpec
from flanlab.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "m"
    build_mixture(MixConfig(total_examples=300, output=str(out)), progress=False)
    return out


def _cfg(mixture, out, **kw):
    return TrainConfig(mixture=str(mixture), output=str(out), steps=4, batch_size=4, log_every=1, tensorboard=False,
                       model=ModelSpec(preset="t5-0.5m"), **kw)


def test_wandb_offline_run_holds_every_logged_step(mixture, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(_cfg(mixture, tmp_path / "t", wandb=True, wandb_project="flanlab-test"), progress=False)
    runs = list((tmp_path / "t" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = next(runs[0].glob("run-*.wandb")).read_bytes()  # the run's records (protobuf), as `wandb sync` uploads them
    logged = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and b"tokens_per_s" in data and b"t5-0.5m" in data  # history keys, the config
    for rec in logged:  # every logged loss is in the W&B history, as its JSON text
        assert json.dumps(rec["loss"]).encode() in data, rec


def test_wandb_without_the_library_is_one_clear_error(mixture, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(FlanlabError, match=r'pip install "flanlab\[wandb\]"'):
        train(_cfg(mixture, tmp_path / "t", wandb=True), progress=False)
