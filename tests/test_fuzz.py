"""Corrupt input files never end in a traceback: seeded mutants of configs, task files and benchmark files are
loaded or refused with a FlanlabError (benchmarks/fuzz_inputs.py runs the same harness at 1,200 mutants)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz_inputs  # noqa: E402


@pytest.mark.parametrize("kind", ["yaml_config", "task_files", "mmlu", "bbh", "tydiqa"])
def test_mutated_inputs_are_loaded_or_refused_never_a_traceback(kind, tmp_path):
    if kind in ("mmlu", "bbh", "tydiqa") and not fuzz_inputs.DATA.is_dir():
        pytest.skip(f"needs ../shared/data ({kind} files to mutate)")
    res = fuzz_inputs.fuzz(30, seed=7, work=tmp_path, kinds=[kind])[kind]
    assert res["baseline_failures"] == []
    assert res["traceback"] == 0, res["tracebacks"]
    assert res["refused"] > 0 and res["loaded"] + res["refused"] == 30
