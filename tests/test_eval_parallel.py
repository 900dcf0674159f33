"""Data-parallel evaluation (`flanlab eval --nproc 2`): the same scores and predictions as one process, one shared
request cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flanlab.datapaths import data_root

DATA = data_root() or Path("no-real-data")  # FLANLAB_DATA, or ../shared/data when present
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _eval(cfg: Path, out: Path, nproc: int = 1) -> dict:
    cmd = [sys.executable, "-m", "flanlab", "eval", str(cfg), "-o", str(out), "--nproc", str(nproc)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return json.loads((out / "results.json").read_text())


def _scores(res: dict) -> dict:
    return {(b, m): {k: v for k, v in r.items() if k != "seconds"} for b, modes in res["benchmarks"].items()
            for m, r in modes.items()}


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["t5-1m", "llama-1m"])
def test_two_processes_give_one_process_answers_and_share_the_cache(tmp_path, preset):
    benchmarks = [  # greedy generation, seeded sampling (self-consistency) and log-likelihood ranking
        {"name": "synthetic", "subsets": ["parity:tens", "parity:hundreds", "successor:tens"],
         "modes": ["direct", "cot_sc"], "limit": 5},
        {"name": "synthetic", "label": "choices", "subsets": ["parity:*", "evaluate_boolean:*"], "options": True,
         "mc_scoring": "loglik", "limit": 6}]
    if DATA.is_dir():  # real 5-shot prompts: decoder-only models share each subject's exemplar prefix
        benchmarks.append({"name": "mmlu", "path": str(DATA / "mmlu"), "subsets": ["astronomy", "virology"], "limit": 4,
                           "mc_scoring": "loglik"})
    cfg = tmp_path / "e.yaml"
    cfg.write_text(yaml.safe_dump({"eval": {
        "preset": preset, "threads": 1, "batch_tokens": 1024, "benchmarks": benchmarks,
        "decoding": {"cot_max_new_tokens": 12, "sc_samples": 3}}}))
    one = _eval(cfg, tmp_path / "one")
    two = _eval(cfg, tmp_path / "two", nproc=2)
    assert _scores(two) == _scores(one)
    assert (tmp_path / "two" / "predictions.jsonl").read_text() == (tmp_path / "one" / "predictions.jsonl").read_text()
    assert all(p["forward_calls"] > 0 for p in two["engine"]["per_process"])  # both processes did model work
    # one cache, written once: every answer is on one line, and a rerun (any process count) answers from it alone
    lines = (tmp_path / "two" / "cache.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "one" / "cache.jsonl").read_text().splitlines())
    again = _eval(cfg, tmp_path / "two", nproc=2)
    assert again["engine"]["forward_calls"] == 0 and again["engine"]["cache_hits"] == 2 * len(lines)
    assert _scores(again) == _scores(one)
    assert _eval(cfg, tmp_path / "two")["engine"]["cache_hits"] == len(lines)


@pytest.mark.slow
def test_missing_data_under_two_processes_is_one_clear_error(tmp_path):
    cfg = tmp_path / "e.yaml"
    cfg.write_text(yaml.safe_dump({"eval": {"preset": "t5-1m", "benchmarks": [{"name": "bbh",
                                                                                  "path": str(tmp_path / "nope")}]}}))
    # the CLI checks the data before launching processes: one error, no launcher output
    p = subprocess.run([sys.executable, "-m", "flanlab", "eval", str(cfg), "-o", str(tmp_path / "o"), "--nproc", "2"],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert p.returncode == 2
    assert "field 'benchmarks[0].path': benchmark data not found" in p.stderr and "torch.distributed" not in p.stderr
    # launched by torchrun directly: process 0 loads first and the other stops with its error instead of waiting
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
                        "flanlab.evaluate.launch", str(cfg), "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert p.returncode != 0 and "process 0 could not load the benchmarks" in p.stderr
    assert not (tmp_path / "o" / "results.json").exists()
