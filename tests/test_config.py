"""Config loading (flanlab/config.py): unknown keys get the nearest known one; renamed keys say their new name."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import cli, write  # noqa: E402


@pytest.mark.parametrize("command, name, text, said", [
    ("mix", "r.yaml", "mix: {total_examples: 10}\nfoo_bar: 1\n", "field 'foo_bar': unknown top-level key; known:"),
    ("mix", "r.yaml", "mix: {total_examples: 10}\ntrian: {steps: 1}\n",
     "field 'trian': unknown top-level key; did you mean 'train'?"),
    ("mix", "r.yaml", "mix:\n  collections: [{name: a, tasks: ['@synthetic'], wieght: 2}]\n",
     "field 'mix.collections[0].wieght': unknown field; did you mean 'weight'?"),
    ("train", "t.yaml", "train: {model: {presett: t5-1m}}\n",
     "field 'train.model.presett': unknown field; did you mean 'preset'?"),
])
def test_unknown_keys_get_a_did_you_mean(tmp_path, command, name, text, said):
    code, out = cli(command, write(tmp_path / name, text))
    assert code == 2 and said in out


def test_a_directory_as_config_is_named(tmp_path):
    code, text = cli("mix", tmp_path)
    assert code == 2 and f"{tmp_path}: is a directory" in text


def test_a_renamed_key_says_its_new_name_and_nothing_is_written(tmp_path):
    """Benchmark parts are `subsets:` (was `tasks:` / `languages:`), a task file's flag `benchmark_source:` (was
    `benchmark:`): the old keys fail with exit 2 naming the file, the field and the new name."""
    for old in ("tasks: [anatomy]", "languages: [de]"):
        cfg = write(tmp_path / "e.yaml", f"eval:\n  preset: t5-1m\n  output: {tmp_path / 'out'}\n"
                                         f"  benchmarks: [{{name: mmlu, {old}}}]\n")
        code, text = cli("eval", cfg)
        key = old.split(":")[0]
        assert code == 2 and f"field 'eval.benchmarks[0].{key}': '{key}' was renamed to 'subsets'" in text, text
        assert str(cfg) in text and not (tmp_path / "out").exists()
    code, text = cli("eval", "-c", "t5-1m", "benchmarks=[{name: bbh, tasks: [navigate]}]", "-o", tmp_path / "out")
    assert code == 2 and "'tasks' was renamed to 'subsets'" in text and "<command line>" in text
    tasks = write(tmp_path / "t.yaml", "tasks:\n  - {dataset: d, category: qa, benchmark: true, source: {type: jsonl, "
                                       "path: d.jsonl}, templates: [{input: '{q}'}]}\n")
    cfg = write(tmp_path / "m.yaml", f"mix:\n  output: {tmp_path / 'mix'}\n  registry: {{task_files: [{tasks}]}}\n"
                                     "  collections: [{name: c, tasks: ['@custom']}]\n")
    code, text = cli("mix", cfg)
    assert code == 2 and "'benchmark' was renamed to 'benchmark_source'" in text and str(tasks) in text, text
    assert not (tmp_path / "mix").exists()


def test_the_new_key_selects_the_parts(tmp_path):
    from flanlab.config import validate
    from flanlab.evaluate.harness import EvalConfig
    cfg = validate(EvalConfig, {"benchmarks": [{"name": "synthetic", "subsets": ["held_out"]},
                                               {"name": "realtoxicityprompts", "subsets": ["challenging"]}]})
    assert [b.subsets for b in cfg.benchmarks] == [["held_out"], ["challenging"]]
    code, text = cli("eval", "-c", "t5-1m", "benchmarks=[{name: realtoxicityprompts, subsets: [toxc]}]")
    assert code == 2 and "realtoxicityprompts subsets are toxic, nontoxic, challenging" in text
