"""Every command the README and docs/ show: the quick ones run, the others are parsed by the real CLI (subcommand,
options, arguments) with their files checked, so a renamed option or a moved example breaks this test."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer._click.exceptions import UsageError  # typer vendors its own click
from typer.main import get_command

from flanlab.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# placeholders the docs use, and what stands for them here
PLACEHOLDERS = {"CONFIG": "examples/train.yaml", "RUN": "benchmarks/results/default_run", "$NODE_RANK": "0",
                "HOST:29500": "127.0.0.1:29500", "HOST": "127.0.0.1"}
# made by the test
EVAL_DIRS = ("RUN/eval_before", "RUN/eval_after", "runs/x/eval_before", "runs/x/eval_after", "RUN/eval_sc")
QUICK = {"tasks", "compare"}  # run for real (in a scratch directory); everything else is parsed


def commands() -> list[tuple[str, str]]:
    """(document, command line) of every ```bash block, continuation lines joined, comments dropped."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    out.append((doc.name, line))
    return out


def _args(line: str, evals: dict) -> list[str]:
    return [evals.get(a, PLACEHOLDERS.get(a, a)) for a in shlex.split(line)]


def parse_flanlab(args: list[str]) -> None:
    """The CLI's own parser on `args` (after `flanlab`), down to the leaf command, without running it."""
    cmd = get_command(app)
    ctx = cmd.make_context("flanlab", list(args), resilient_parsing=False)
    while hasattr(cmd, "resolve_command"):  # a group: descend to the subcommand
        name, sub, rest = cmd.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)
    for p in cmd.params:  # files the command is given must exist (CONFIG paths, directories)
        v = ctx.params.get(p.name)
        if isinstance(v, Path) and p.name in ("config", "a", "b", "path"):
            assert (ROOT / v).exists(), f"{v} does not exist"


def test_every_documented_command_runs_or_parses(tmp_path):
    from test_compare import write_eval
    items = [(f"i{i}", f"t{i % 2}", float(i % 3 == 0)) for i in range(6)]
    kinds = {"RUN/eval_sc": [("gsm8k", "cot"), ("gsm8k", "cot_sc")]}  # two promptings of one benchmark
    evals = {name: str(write_eval(tmp_path / name.replace("/", "_"),
                                  {k: items for k in kinds.get(name, [("bbh", "direct")])})) for name in EVAL_DIRS}
    cmds = commands()
    ran = parsed = 0
    for doc, line in cmds:
        args = _args(line, evals)
        if args[0] == "flanlab":
            parse_flanlab(args[1:])
            if args[1] in QUICK:
                r = subprocess.run([sys.executable, "-m", "flanlab", *args[1:]], cwd=tmp_path, capture_output=True,
                                   text=True, timeout=300)
                assert r.returncode == 0, f"{doc}: {line}: {r.stderr[-500:]}"
                ran += 1
            parsed += 1
        elif args[0] in ("torchrun", "accelerate"):
            i = args.index("-m")
            assert args[i + 1] == "flanlab.train.launch", line
            config = args[i + 2]
            assert (ROOT / config).is_file(), f"{doc}: {config}"
            from flanlab.train.trainer import load_train_config
            load_train_config(ROOT / config, args[i + 3:])  # the overrides parse and validate
            parsed += 1
        elif args[0] == "python":
            script = ROOT / args[1]
            assert script.is_file(), f"{doc}: {line}"
            compile(script.read_text(), str(script), "exec")
            parsed += 1
        elif args[0] == "bash":
            script = ROOT / args[1]
            assert script.is_file(), f"{doc}: {line}"
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, f"{doc}: {line}"  # it parses
            parsed += 1
        elif args[0] == "make":
            assert re.search(rf"^{args[1]}:", (ROOT / "Makefile").read_text(), re.M), f"{doc}: {line}"
            parsed += 1
        else:
            pytest.fail(f"{doc}: a command this test does not know how to check: {line}")
    assert parsed == len(cmds) and parsed >= 25 and ran >= 3
    print(f"docs: {len(cmds)} commands, {parsed} parsed, {ran} run")


def test_the_docs_test_catches_a_renamed_option():
    with pytest.raises(UsageError):
        parse_flanlab(["compare", "a", "b", "--nmes", "x,y"])
    with pytest.raises(AssertionError):
        parse_flanlab(["mix", "examples/no_such.yaml"])
