"""Check flanlab's import layering over the AST of every module in src/flanlab, function-level imports included:
no module imports a package of a higher layer, and the import graph between packages has no cycle.

    python scripts/check_layers.py        # prints the package graph; exit 1 and the offending imports if broken
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "flanlab"
# lower number = lower layer; a module may import its own layer (no cycle) or below
LAYERS = {
    "errors": 0, "utils": 0, "runtime": 0, "config": 0, "datapaths": 0, "outlock": 0, "memory": 0, "__init__": 0,
    "data": 1, "tasks": 1, "formats": 1, "models": 1,
    "mixture": 2, "train": 2, "evaluate": 2,
    "experiments": 3,
    "cli": 4, "__main__": 4, "jobs": 4,
}


def unit(module: str) -> str:
    """flanlab.x.y -> x (the package or top-level module an import lands in)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute flanlab module) of every import in `path`, wherever it sits in the file."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    pkg = list(rel.parts[:-1])  # the package a relative import starts from
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "flanlab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod for a in node.names]
                out += [(node.lineno, m) for m in names]
            elif node.module and node.module.split(".")[0] == "flanlab":
                out.append((node.lineno, node.module))
    return out


def _is_module(name: str) -> bool:
    p = SRC.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or p.is_dir()


def check() -> tuple[list[str], dict[str, set[str]]]:
    problems, graph = [], {}
    for path in sorted(SRC.rglob("*.py")):
        here = unit("flanlab." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        for line, mod in imports(path):
            there = unit(mod)
            if there == here:
                continue
            graph.setdefault(here, set()).add(there)
            if there not in LAYERS or here not in LAYERS:
                problems.append(f"{path.relative_to(SRC.parent)}:{line}: {mod}: package not in LAYERS")
            elif LAYERS[there] > LAYERS[here]:
                problems.append(f"{path.relative_to(SRC.parent)}:{line}: {here} (layer {LAYERS[here]}) imports "
                                f"{mod} (layer {LAYERS[there]})")
    for cycle in cycles(graph):
        problems.append("cycle: " + " -> ".join(cycle))
    return problems, graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


if __name__ == "__main__":
    problems, graph = check()
    for n in sorted(graph, key=lambda n: (LAYERS.get(n, 9), n)):
        print(f"{n:12s} (layer {LAYERS.get(n, '?')}) -> {', '.join(sorted(graph[n]))}")
    print("\n".join(problems) if problems else "layering: ok (no upward import, no cycle)")
    sys.exit(1 if problems else 0)
