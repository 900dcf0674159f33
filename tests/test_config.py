"""Config loading (flanlab/config.py): unknown keys get the nearest known one; renamed keys say their new name."""
from pathlib import Path

from typer.testing import CliRunner

from flanlab.cli import app

runner = CliRunner()


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception  # never a traceback
    return r.exit_code, r.output


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    cfg = write(tmp_path / "r.yaml", "mix: {total_examples: 10}\nfoo_bar: 1\n")
    code, text = cli("mix", cfg)
    assert code == 2 and "field 'foo_bar': unknown top-level key; known:" in text
    cfg = write(tmp_path / "r.yaml", "mix: {total_examples: 10}\ntrian: {steps: 1}\n")
    code, text = cli("mix", cfg)
    assert code == 2 and "field 'trian': unknown top-level key; did you mean 'train'?" in text
    cfg = write(tmp_path / "r.yaml", "mix:\n  collections: [{name: a, tasks: ['@synthetic'], wieght: 2}]\n")
    code, text = cli("mix", cfg)
    assert code == 2 and "field 'mix.collections[0].wieght': unknown field; did you mean 'weight'?" in text
    cfg = write(tmp_path / "t.yaml", "train: {model: {presett: t5-1m}}\n")
    code, text = cli("train", cfg)
    assert code == 2 and "field 'train.model.presett': unknown field; did you mean 'preset'?" in text
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
