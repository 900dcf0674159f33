import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_only_go_down_the_layers_and_never_round_in_a_cycle():
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "layering: ok" in p.stdout


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_layers
    finally:
        sys.path.pop(0)
    src = tmp_path / "flanlab"
    (src / "models").mkdir(parents=True)
    (src / "experiments").mkdir()
    (src / "experiments" / "run.py").write_text("from ..models import build\n")
    (src / "models" / "build.py").write_text("def f():\n    from ..experiments.run import x\n")
    monkeypatch.setattr(check_layers, "SRC", src)
    problems, _ = check_layers.check()
    assert any("models/build.py:2" in p and "layer 3" in p for p in problems), problems
    assert any(p.startswith("cycle:") for p in problems), problems
