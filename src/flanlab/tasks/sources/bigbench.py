"""BIG-bench JSON tasks, from the installed `bigbench` package (importlib.resources) or a directory."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ...errors import FlanlabError
from ...utils import read_text
from ..model import Dataset, Example, ListSource, Task, TaskCategory, Template, content_key, hash_split

# BIG-bench tasks from which BIG-Bench Hard (BBH) is drawn: benchmark sources, never training data.
BBH_SOURCE_TASKS = frozenset("""boolean_expressions causal_judgment date_understanding disambiguation_qa dyck_languages
formal_fallacies_syllogisms_negation geometric_shapes hyperbaton logical_deduction movie_recommendation multistep_arithmetic
navigate object_counting penguins_in_a_table reasoning_about_colored_objects ruin_names salient_translation_error_detection
snarks sports_understanding temporal_sequences tracking_shuffled_objects web_of_lies word_sorting""".split())


# the BIG-bench tasks flanlab's shipped configs name, copied unchanged from bigbench 1.0.0 (see its README.md):
# PyPI no longer serves that package, so a fresh install has only these
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "data" / "bigbench"


def _root(root: str | Path | None):
    """The given directory, else the installed bigbench package's tasks (all of them), else the shipped subset."""
    if root is not None:
        p = Path(root)
        if not p.is_dir():
            raise FlanlabError("BIG-bench task directory not found", file=p)
        return p
    try:
        import importlib.resources as res
        tasks = res.files("bigbench") / "benchmark_tasks"
    except ModuleNotFoundError:
        return SHIPPED_ROOT
    # PyPI's bigbench 0.0.1 (what `pip install bigbench` now gets) has no tasks
    return tasks if tasks.is_dir() else SHIPPED_ROOT


def missing_task_hint(root) -> str:
    if root is None and _root(None) == SHIPPED_ROOT:
        return (f" (without the bigbench package flanlab has only the {len(list_bigbench_tasks())} tasks it ships; "
                "give a BIG-bench benchmark_tasks directory as bigbench_root for the others)")
    return ""


@lru_cache(maxsize=8)
def list_bigbench_tasks(root: str | None = None) -> tuple[str, ...]:
    """Names of JSON tasks; subtasks are 'parent/sub'."""
    base = _root(root)
    names = []
    for d in sorted(base.iterdir(), key=lambda x: x.name):
        if not d.is_dir() or d.name.startswith("_"):
            continue
        subs = [s for s in sorted(d.iterdir(), key=lambda x: x.name) if s.is_dir() and (s / "task.json").is_file()]
        if subs:
            names += [f"{d.name}/{s.name}" for s in subs]
        elif (d / "task.json").is_file():
            names.append(d.name)
    return tuple(names)


def load_task_json(name: str, root: str | Path | None = None) -> tuple[dict, object]:
    base = _root(root)
    f = base
    for part in name.split("/"):
        f = f / part
    f = f / "task.json"
    if not f.is_file():
        raise FlanlabError(f"no BIG-bench JSON task named '{name}'{missing_task_hint(root)}", file=str(f),
                           field="bigbench_task")
    try:
        return json.loads(read_text(f)), f
    except json.JSONDecodeError as e:
        raise FlanlabError(f"not valid JSON: {e.msg} (line {e.lineno})", file=str(f)) from None


def parse_examples(data: dict, file: object, name: str) -> list[Example]:
    if "examples" not in data or not isinstance(data["examples"], list):
        raise FlanlabError("task has no 'examples' list", file=file, field="examples")
    prefix = data.get("task_prefix", "")
    out = []
    for i, ex in enumerate(data["examples"]):
        if "input" not in ex:
            raise FlanlabError("example has no 'input'", file=file, field=f"examples[{i}].input")
        options = None
        if "target_scores" in ex:
            ts = ex["target_scores"]
            if not isinstance(ts, dict) or not ts:
                raise FlanlabError("target_scores must be a non-empty object", file=file,
                                   field=f"examples[{i}].target_scores")
            options = tuple(str(k) for k in ts)
            answer = max(ts, key=lambda k: ts[k])
        elif "target" in ex:
            t = ex["target"]
            answer = t[0] if isinstance(t, list) else t
        else:
            raise FlanlabError("example has neither 'target' nor 'target_scores'", file=file, field=f"examples[{i}]")
        targets = ex.get("target")
        fields = {"input": str(ex["input"]), "task_prefix": prefix}
        aliases = tuple(str(t) for t in targets) if isinstance(targets, list) and len(targets) > 1 else None
        out.append(Example(id=f"bigbench/{name}/{i}", fields=fields, answer=str(answer), options=options,
                           aliases=aliases))
    return out


class BigBenchSource(ListSource):
    """BIG-bench has no splits: examples are assigned deterministically 80/10/10 by content hash
    (a benchmark evaluation reads all of them via `all_examples`)."""

    def __init__(self, name: str, root: str | Path | None = None):
        data, f = load_task_json(name, root)
        self.meta = {k: v for k, v in data.items() if k != "examples"}
        self.all_examples = parse_examples(data, f, name)
        splits: dict[str, list] = {"train": [], "validation": [], "test": []}
        for ex in self.all_examples:
            splits[hash_split(content_key(ex))].append(ex)  # by content: a repeated item stays in one split
        super().__init__(splits)


def _esc(s: str) -> str:
    return s.replace("{", "{{").replace("}", "}}")


def bigbench_task(name: str, root: str | Path | None = None, *, held_out: bool = True) -> Task:
    src = BigBenchSource(name, root)
    m = src.meta
    inp = _esc(m.get("example_input_prefix", "\nQ: "))
    outp = _esc(m.get("example_output_prefix", "\nA: "))
    native = Template(("{task_prefix}" + inp + "{input}" + outp).lstrip("\n"))
    templates = (native, Template("Question: {input}\nAnswer:"), Template("{input}\n\nWhat is the answer?"))
    mc = any(e.options for e in src.all_examples)
    cat = TaskCategory("bigbench_mc" if mc else "bigbench_gen", templates, answer_type="choice" if mc else "text",
                       description=m.get("description", ""))
    parent = name.split("/")[0]
    return Task(Dataset(name, src, m.get("description", "")), cat, collection="bigbench", held_out=held_out,
                benchmark_source=parent in BBH_SOURCE_TASKS, name_override=f"bigbench:{name}",
                raw_fields=("input",))  # task_prefix is the task's instruction text, not part of an item
