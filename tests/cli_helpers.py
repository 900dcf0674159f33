"""The CLI as a test drives it: `cli(*args)` -> (exit code, output), never a traceback; `write` a config file."""
from pathlib import Path

from typer.testing import CliRunner

from flanlab.cli import app

runner = CliRunner()


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception  # never a traceback
    return r.exit_code, r.output


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
