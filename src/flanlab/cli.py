"""The `flanlab` command line: tasks, mix, train, eval, run, compare, sweep, report."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import FlanlabError


class _HelpWithoutType:
    """--help is a flag: shown without the `<bool>` type column typer gives it (our other flags set metavar="")."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Group(_HelpWithoutType, typer.core.TyperGroup):
    pass


class Command(_HelpWithoutType, typer.core.TyperCommand):
    pass


app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, cls=Group)
OUTPUT_OPTION = typer.Option(None, "--output", "-o", help="Output directory (overrides the config's).")


@app.callback()
def _entry() -> None:
    """Every command: OpenMP's wait policy chosen before anything loads torch (flanlab/runtime.py), and how freed
    memory goes back to the system (flanlab/memory.py)."""
    from .memory import choose_malloc
    from .runtime import choose_wait_policy
    choose_wait_policy()
    try:
        choose_malloc()
    except FlanlabError as e:
        _fail(e)


tasks_app = typer.Typer(no_args_is_help=True, help="Browse the task collection.", cls=Group)
app.add_typer(tasks_app, name="tasks")
data_app = typer.Typer(no_args_is_help=True, help="Where datasets come from; fetch them from the Hugging Face Hub.",
                       cls=Group)
app.add_typer(data_app, name="data")
# soft_wrap: long lines are never hard-wrapped at the terminal width (or at 80 columns when piped)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(e))}")  # user text (globs like reverse_[xyz]*) is not markup
    raise typer.Exit(2)


@contextmanager
def guard(interrupted=lambda: "interrupted"):
    """Errors as one line and exit 2 (an OSError - file name too long, permission denied - names its path); Ctrl-C as
    one line saying what was saved and how to resume (`interrupted()` writes it), exit 130."""
    try:
        yield
    except FlanlabError as e:
        _fail(e)
    except OSError as e:
        if e.strerror is None:
            raise
        _fail(FlanlabError(e.strerror[0].lower() + e.strerror[1:], file=e.filename))
    except KeyboardInterrupt:
        console.print(f"[bold yellow]interrupted:[/] {escape(interrupted())}")
        raise typer.Exit(130) from None


def _resume_train(output: str, command: str) -> str:
    latest = Path(output) / "latest"
    saved = (f"checkpoints up to {latest.read_text().strip()} are in {output}" if latest.is_file()
             else f"no checkpoint was written yet in {output}")
    return f"{saved}; `{command}` resumes from the latest one"


def _resume_eval(output: str, command: str) -> str:
    cache = Path(output) / "cache.jsonl"
    n = sum(1 for _ in cache.open(encoding="utf-8")) if cache.is_file() else 0
    return f"{n} answered requests are saved in {cache}; `{command}` continues from them"


def _command(*parts) -> str:
    return "flanlab " + " ".join(str(p) for p in parts if p)


def log_line(message: str) -> None:
    console.print(message, markup=False, highlight=False)  # stage labels like [train] are text, not markup


def _section(path: Path, name: str):
    from .config import read_section
    return read_section(path, name)


def _registry(task_files: list[Path], bigbench: list[str]):
    from .tasks.registry import RegistrySpec
    return RegistrySpec(task_files=[str(f) for f in task_files], bigbench_tasks=bigbench).build()


@tasks_app.command("list", cls=Command)
def tasks_list(task_file: list[Path] = typer.Option([], "--task-file", "-f", help="Extra task YAML file(s)."),
               bigbench: list[str] = typer.Option([], "--bigbench", help="BIG-bench task name/glob to include."),
               as_json: bool = typer.Option(False, "--json", metavar="", help="One JSON list instead of a table."),
               benchmarks: bool = typer.Option(False, "--benchmarks", metavar="",
                                               help="The benchmarks `flanlab eval --tasks` takes, with their protocol.")):
    """List tasks: name, dataset, category, collection, held-out flag, train size."""
    if benchmarks:
        from .evaluate.harness import COMMAND_LINE_BENCHMARKS, DEFAULT_SHOTS
        rows = [{"benchmark": n, "shots": DEFAULT_SHOTS[n], "modes": d.get("modes", ["direct"]),
                 "scoring": d.get("mc_scoring", "generate")} for n, d in COMMAND_LINE_BENCHMARKS.items()]
        if as_json:
            out.print_json(json.dumps(rows))
        else:
            for r in rows:
                out.print(f"{r['benchmark']}\t{r['shots']}-shot\t{','.join(r['modes'])}\t{r['scoring']}",
                          markup=False, highlight=False)
        return
    with guard():
        reg = _registry(task_file, bigbench)
    if as_json:
        out.print_json(json.dumps([{k: v for k, v in t.describe().items() if k != "templates"} for t in reg]))
        return
    head = ("task", "dataset", "category", "collection", "held-out", "train")
    rows = [(t.name, t.dataset.name, t.category.name, t.collection,
             "benchmark" if t.benchmark_source else ("yes" if t.held_out else ""), str(t.size("train"))) for t in reg]
    if not out.is_terminal:  # piped: one tab-separated line per task, nothing folded (grep, cut, awk)
        print("\t".join(head))
        for r in rows:
            print("\t".join(r))
        return
    tab = Table(title=f"{len(reg)} tasks")
    for c in head:
        tab.add_column(c, no_wrap=True)
    for r in rows:
        tab.add_row(*(escape(x) for x in r))
    out.print(tab)


@tasks_app.command("show", cls=Command)
def tasks_show(name: str = typer.Argument(..., help="Task name, as `flanlab tasks list` prints it."),
               task_file: list[Path] = typer.Option([], "--task-file", "-f", help="Extra task YAML file(s)."),
               bigbench: list[str] = typer.Option([], "--bigbench", help="BIG-bench task name/glob to include."),
               n: int = typer.Option(2, "--n", min=0, help="Rendered examples to show.")):
    """Show one task: metadata, templates and rendered examples in several formats."""
    from .formats import Format, render_example
    with guard():
        reg = _registry(task_file, bigbench)
        t = reg[name]
        out.print_json(json.dumps(t.describe()))
        split = "train" if t.size("train") else "test"
        for i in range(min(n, t.size(split))):
            ex = t.get(split, i)
            for fmt in (Format(), Format(0, True, False), Format(0, False, ex.rationale is not None)):
                r = render_example(t, ex, t.get_templates()[i % len(t.get_templates())], fmt)
                out.rule(escape(f"{ex.id} [{r['format']}]"))
                out.print(r["inputs"], markup=False)
                out.print(f"[bold]→[/] {escape(r['targets'])}", highlight=False)


@app.command(cls=Command)
def mix(config: Path = typer.Argument(..., help="Mixture YAML (top level or under 'mix:')."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. total_examples=5000 (after "
                                                         "CONFIG)"),
        output: Optional[Path] = OUTPUT_OPTION,
        overwrite: bool = typer.Option(False, "--overwrite", metavar="",
                                       help="Replace an existing mixture built from another config (only once the new "
                                            "one is complete)."),
        no_progress: bool = typer.Option(False, "--no-progress", metavar="", help="No progress bar.")):
    """Build an instruction-tuning mixture: shards + manifest."""
    from .config import validate
    from .mixture import MixConfig, build_mixture
    with guard(lambda: "nothing was written (a mixture is published only when complete); run the same command "
                       "again"):
        data, sec = _section(config, "mix")
        cfg = validate(MixConfig, data, file=config, prefix=sec)
        if overrides:
            from .config import apply_overrides
            cfg = validate(MixConfig, apply_overrides(cfg.model_dump(), overrides), file="<command line>")
        if output:
            cfg.output = str(output)
        if overwrite:
            cfg.overwrite = True
        man = build_mixture(cfg, file=config, progress=not no_progress, base=config.parent).manifest
    for w in man.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    out.print(f"wrote {man['examples']} examples from {len(man['per_task'])} tasks to {cfg.output} "
              f"({man['examples_per_second']} ex/s, {man['dropped_contaminated']} dropped as equal to a held-out "
              "example)",
              markup=False, highlight=False)
    for line in mix_summary(man):
        out.print(line, markup=False, highlight=False)


def _submixture_lines(name: str, e: dict) -> list[str]:
    """One submixture of the manifest's flan2022 section: examples, share, rate and cap vs the paper's, and the tasks
    present, missing and extra by name."""
    share = f"{e['examples']:>7,} examples ({100 * e.get('share', 0):4.1f}%)"
    if "paper_rate" not in e:
        return [f"  {name:<8} {share}  {e['tasks_present']} tasks, rate {e['rate_used']:.3f}, cap {e['cap']:,}"]
    lines = [f"  {name:<8} {share}  rate {e['rate_used']:.3f} (paper {e['paper_rate']} before renormalising), "
             f"cap {e['cap']:,}"]
    by = e.get("by_name")
    if by:
        def few(xs):
            return ", ".join(xs[:4]) + (f", ... ({len(xs)})" if len(xs) > 4 else "") if xs else "none"
        lines.append(f"           tasks: {by['present']} of {by['list_tasks']} on the list present; missing: "
                     f"{few(by['missing'])}; extra: {few(by['extra'])}")
    else:
        lines.append(f"           tasks: {e['tasks_present']} of {e['paper_tasks'] or '?'}")
    for reason, k in sorted(e.get("excluded", {}).items()):
        lines.append(f"           left out: {k} ({reason})")
    if e.get("dropped_by_decontamination"):
        lines.append(f"           left out: {len(e['dropped_by_decontamination'])} (every example caught by the "
                     f"n-gram decontamination)")
    if e.get("note"):
        lines.append(f"           {e['note']}")
    return lines


def mix_summary(man: dict) -> list[str]:
    """Flan 2022 coverage per submixture and n-gram decontamination, as lines."""
    lines = []
    cov = man.get("flan2022") or {}
    subs = cov.get("submixtures", {})
    if any(not k.startswith("extra:") for k in subs):
        if "list_tasks" in cov:
            lines.append(f"Flan 2022 submixtures: {cov['flan_tasks_present_by_name']:,} of the {cov['list_tasks']:,} "
                         f"tasks on Flan's task list present by name (paper: {cov['paper_tasks']:,}; "
                         f"{cov['task_list']}):")
        else:
            lines.append(f"Flan 2022 submixtures ({cov['flan_tasks_present']} of the paper's {cov['paper_tasks']:,} "
                         "tasks; set flan_task_list to compare by name):")
        for name, entries in subs.items():
            for e in entries:
                lines += _submixture_lines(name, e)
        for m in cov.get("missing", []):
            lines.append(f"  {m['submixture']:<8} missing: no source ({m.get('list_tasks', m['paper_tasks']) or '?'} "
                         f"tasks, paper rate {m['paper_rate']})")
    data = man.get("data") or {}
    for label, src in data.get("collections", {}).items():  # where the training rows came from
        where = f"{src['repo']}@{src['commit'][:12]}" if src.get("source") == "hub" else src.get("path")
        lines.append(f"data {label}: {where} ({src['rows']:,} rows scanned, {src['row_groups_read']} of "
                     f"{src['row_groups_scanned']} row groups read)")
    dec = man.get("ngram_decontamination")
    if dec:
        from .data.resolve import describe
        for b, src in sorted((dec.get("sources") or {}).items()):
            lines.append(f"decontamination data {b}: {describe(src)}")
        per = ", ".join(f"{b} {k}" for b, k in sorted(dec["per_benchmark"].items())) or "none"
        lines.append(f"{dec['ngram']}-gram decontamination: {dec['dropped']} examples dropped ({per}); "
                     f"{dec['indexed_ngrams']:,} n-grams from {sum(dec['benchmark_items'].values()):,} benchmark items")
    return lines


def _torchrun(nproc: int, module: str, *args: str) -> int:
    from .runtime import torchrun
    return torchrun(nproc, module, *args)


NPROC_HELP = "Processes (DDP/FSDP via torchrun; gloo on CPU); at least 1."


@app.command(cls=Command)
def train(config: Path = typer.Argument(..., help="Training YAML (top level or under 'train:')."),
          nproc: int = typer.Option(1, "--nproc", min=1, help=NPROC_HELP),
          no_progress: bool = typer.Option(False, "--no-progress", metavar="", help="No progress bar."),
          output: Optional[Path] = OUTPUT_OPTION,
          overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. steps=100 model.preset=t5-5m")):
    """Finetune a model on a mixture (packed, loss on targets only, resumable)."""
    from .train.trainer import load_train_config, train as run_train
    cfg = None
    overrides = [*(overrides or []), *([f"output={output}"] if output else [])]  # -o as in mix and eval
    with guard(lambda: _resume_train(cfg.output, _command("train", config, *overrides))
               if cfg else "nothing was written"):
        cfg = load_train_config(config, overrides)  # validated before any process is launched
        if nproc > 1:
            raise typer.Exit(_torchrun(nproc, "flanlab.train.launch", str(config), *overrides))
        done = run_train(cfg, progress=not no_progress, file=config, log=log_line)
    out.print_json(json.dumps({**done.summary, "cached": done.cached}))


def _split_config(config: Optional[Path], overrides: Optional[list[str]]) -> tuple[Optional[Path], list[str]]:
    """`flanlab CMD key=value …` without a config: the first override arrived as the config argument."""
    if config is not None and "=" in str(config) and not config.exists():
        return None, [str(config), *(overrides or [])]
    return config, list(overrides or [])


def _resolved_config(cfg, base: Path) -> Path:
    """The command line's eval config as a file every torchrun process reads (relative paths made absolute)."""
    import yaml
    from .utils import atomic_write_text, resolve_path
    d = cfg.model_dump()
    for b in d["benchmarks"]:
        if b.get("path"):
            b["path"] = str(resolve_path(b["path"], base).absolute())
    if d.get("checkpoint") and resolve_path(d["checkpoint"], base).exists():
        d["checkpoint"] = str(resolve_path(d["checkpoint"], base).absolute())
    d["registry"]["task_files"] = [f if f.startswith("@") else str(resolve_path(f, base).absolute())
                                   for f in d["registry"]["task_files"]]
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "eval_config.yaml", yaml.safe_dump({"eval": d}, sort_keys=False))
    return out / "eval_config.yaml"


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command("eval", cls=Command)
def evaluate(config: Optional[Path] = typer.Argument(None, help="Eval YAML (top level or under 'eval:'); optional "
                                                                "with -c and --tasks."),
             overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. batch_tokens=65536 "
                                                              "precision=bf16 (after CONFIG)"),
             checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c",
                                                      help="Model: a checkpoint directory, a .gguf file or a packaged "
                                                           "model's name (overrides the config's)."),
             tasks: Optional[str] = typer.Option(None, "--tasks", help="Benchmarks, comma-separated (mmlu,bbh,tydiqa,"
                                                                        "mgsm,gsm8k): the paper's protocol for each; "
                                                                        "replaces the config's."),
             shots: Optional[int] = typer.Option(None, "--shots", min=0, help="Exemplars per prompt (every benchmark)."),
             modes: Optional[str] = typer.Option(None, "--modes", help="Promptings, comma-separated: direct,cot,cot_sc."),
             limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Items per MMLU subject / BBH task / "
                                                                              "language (every benchmark)."),
             output: Optional[Path] = OUTPUT_OPTION,
             nproc: int = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (torchrun; each loads the "
                                                                 "model and takes its share of the batches)."),
             no_progress: bool = typer.Option(False, "--no-progress", metavar="", help="No progress bar (the "
                                                                                       "periodic progress lines stay).")):
    """Evaluate a model: benchmarks x {direct, cot, cot_sc}; results.json, results_lm_eval.json, predictions.jsonl,
    results.md. `flanlab eval -c smollm2-135m --tasks mmlu --limit 2` needs no YAML."""
    from .evaluate.harness import load_benchmarks, load_eval_config, results_table, run_eval
    config, overrides = _split_config(config, overrides)
    cfg = None
    with guard(lambda: _resume_eval(cfg.output, _command("eval", config, *overrides, checkpoint and f"-c {checkpoint}",
                                                         tasks and f"--tasks {tasks}", output and f"-o {output}"))
               if cfg else "nothing was written"):
        cfg = load_eval_config(config, checkpoint, output, overrides, tasks=_csv(tasks), shots=shots,
                               modes=_csv(modes), limit=limit)  # validated before any process is launched
        base = config.parent if config else Path.cwd()
        if nproc > 1:
            load_benchmarks(cfg, file=config, base=base)  # data errors said once; hub downloads made once
            raise typer.Exit(_torchrun(nproc, "flanlab.evaluate.launch", str(_resolved_config(cfg, base))))
        from .evaluate.progress import EvalProgress
        res = run_eval(cfg, file=config or "<command line>", base=base,
                       progress=EvalProgress(log_line, console=None if no_progress else console)).results
    out.print(results_table(res), markup=False, highlight=False)


@app.command("export", cls=Command)
def export_model(run: Path = typer.Argument(..., help="A `flanlab train` output or a `flanlab run` directory."),
                 dest: Path = typer.Argument(..., help="A new directory for the export."),
                 adapter_only: bool = typer.Option(False, "--adapter", metavar="", help="Only the PEFT adapter."),
                 merged_only: bool = typer.Option(False, "--merged", metavar="", help="Only the merged model."),
                 dtype: str = typer.Option("fp32", "--dtype", help="The merged model's dtype: fp32 or bf16 (half the "
                                                                   "size; rounds part of a LoRA update away)."),
                 hub_repo: Optional[str] = typer.Option(None, "--push-to-hub", help="Also upload to this Hub model "
                                                                                   "repo (created private).")):
    """Export a finetuned model: PEFT adapter + merged model (+ model card), optionally to the Hugging Face Hub."""
    from .train.export import export, push_to_hub
    with guard(lambda: f"the export in {dest} may be incomplete: remove it and run again"):
        if dtype not in ("fp32", "bf16"):
            raise FlanlabError(f"dtype '{dtype}' is not fp32 or bf16", field="--dtype")
        report = export(run, dest, adapter=not merged_only, merged=not adapter_only, dtype=dtype)
        if hub_repo:
            report["hub"] = push_to_hub(dest, hub_repo)
    out.print_json(json.dumps(report))


def main_job() -> Path:
    """The built-in job `flanlab run` runs without a config: the real-data job when the data is there, else the one
    built from what the installed packages ship (said on the console either way)."""
    from .datapaths import data_root
    jobs = Path(__file__).parent / "jobs"
    root = data_root()
    if root is not None:
        log_line(f"[run] built-in main job ({jobs / 'main.yaml'}): SmolLM2-135M-Instruct, the offline Flan 2022 "
                 f"collection and MMLU/BBH from {root}")
        return jobs / "main.yaml"
    from .data.catalog import COLLECTION_FILES, FLAN2022_REPOS
    from .data.hub import cached
    if all(cached(repo, [(COLLECTION_FILES,)]) for repo, _ in FLAN2022_REPOS.values()):
        log_line(f"[run] built-in main job ({jobs / 'main.yaml'}): SmolLM2-135M-Instruct, the Flan 2022 collection "
                 "from the Hugging Face cache, MMLU/BBH from the Hub")
        return jobs / "main.yaml"
    log_line(f"[run] no local data (../shared/data absent, FLANLAB_DATA unset) and the Flan 2022 collection is not in "
             f"the Hugging Face cache: running the built-in job on what the installed packages ship "
             f"({jobs / 'main_packages.yaml'}: BIG-bench tasks, the built-in suite). The collection is on the Hub "
             f"({FLAN2022_REPOS['flan2021'][0]} alone is {FLAN2022_REPOS['flan2021'][1]}; five repos): "
             "`flanlab data fetch flan2022` downloads it, then `flanlab run` trains on it (README: Data)")
    return jobs / "main_packages.yaml"


def _run_config(config: Optional[Path], overrides: list[str]):
    from .config import apply_overrides, read_yaml, validate
    from .experiments.run import RunConfig
    config = config or main_job()
    cfg, base = validate(RunConfig, read_yaml(config), file=config), config.parent
    if overrides:
        cfg = validate(RunConfig, apply_overrides(cfg.model_dump(), overrides), file="<command line>")
    return cfg, base


@app.command(cls=Command)
def run(config: Optional[Path] = typer.Argument(None, help="Run YAML with mix/train/eval sections; default: the "
                                                           "built-in main job (SmolLM2 + Flan; examples/toy.yaml is "
                                                           "the from-scratch toy)."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.steps=50 (after CONFIG)"),
        output: Optional[Path] = OUTPUT_OPTION,
        nproc: int = typer.Option(1, "--nproc", min=1, help=NPROC_HELP + " Evaluation runs in one process."),
        no_progress: bool = typer.Option(False, "--no-progress", metavar="", help="No progress bars.")):
    """Mix -> train -> eval (before and after finetuning), with stage caching; prints the score table."""
    from .experiments.run import run as run_all, run_table
    if config is not None and "=" in config.name and not config.exists():  # `flanlab run key=value`: the default job
        overrides, config = [str(config), *(overrides or [])], None
    cfg = None
    with guard(lambda: f"finished stages and training checkpoints are kept in {cfg.output}; `"
                       f"{_command('run', config, *(overrides or []), output and f'-o {output}')}` resumes"
               if cfg else "nothing was written"):
        cfg, base = _run_config(config, overrides)
        if output:
            cfg.output = str(output)
        rep = run_all(cfg, progress=not no_progress, log=log_line, base=base, console=console, nproc=nproc)
    out.print(run_table(rep), markup=False, highlight=False)
    out.print(f"timing (s): {rep['timing']}; outputs in {cfg.output}/", highlight=False)


@app.command(cls=Command)
def sweep(config: Optional[Path] = typer.Argument(None, help="Sweep YAML; default: tasks {4,16,64} x t5-{1m,5m} x "
                                                              "CoT share {0,0.3}."),
          output: Optional[Path] = OUTPUT_OPTION,
          no_progress: bool = typer.Option(False, "--no-progress", metavar="", help="No progress bars.")):
    """Grid over number of finetuning tasks x model size x CoT share; then writes the report."""
    from .config import read_yaml, validate
    from .experiments.report import report as make_report
    from .experiments.sweep import SweepConfig, sweep as run_sweep
    with guard():
        cfg = validate(SweepConfig, read_yaml(config), file=config) if config else SweepConfig()
        if output:
            cfg.output = str(output)
        run_sweep(cfg, progress=not no_progress, log=log_line)
        r = make_report(cfg.output)
    out.print(Path(r["markdown"]).read_text(), markup=False, highlight=False)


def _comma_pair(value: Optional[str], option: str, what: str) -> Optional[tuple[str, str]]:
    """'A,B' -> (A, B); None stays None; anything else is a usage error naming the option."""
    if not value:
        return None
    pair = tuple(x.strip() for x in value.split(","))
    if len(pair) != 2:
        raise FlanlabError(f"{option} takes two {what} separated by a comma, got '{value[:80]}'", field=option)
    return pair


@app.command(cls=Command)
def compare(a: Path = typer.Argument(..., help="First evaluation output directory (e.g. RUN/eval_before)."),
            b: Path = typer.Argument(..., help="Second evaluation of the same items (e.g. RUN/eval_after)."),
            output: Path = typer.Option(Path("compare.json"), "--output", "-o", help="Where to write the json."),
            names: Optional[str] = typer.Option(None, "--names", help="Column names 'A,B' (default: directory names)."),
            samples: int = typer.Option(2000, "--samples", min=100, help="Bootstrap resamples."),
            modes: Optional[str] = typer.Option(None, "--modes", help="'MODE_A,MODE_B': pair A's MODE_A prompting "
                                                "with B's MODE_B on the same items (e.g. cot,cot_sc; A and B may be "
                                                "one evaluation).")):
    """Paired comparison of two evaluations of the same items: change B - A with its 95% CI, per benchmark.

    Every benchmark and prompting both hold, and the paper's six-entry normalized average; writes the json too."""
    from .experiments.compare import compare as run_compare, comparison_table, write_comparison
    with guard():
        cmp = run_compare(a, b, names=_comma_pair(names, "--names", "names"), samples=samples,
                          modes=_comma_pair(modes, "--modes", "promptings"))
        write_comparison(cmp, output)
    out.print(comparison_table(cmp), markup=False, highlight=False)
    out.print(f"wrote {output}", markup=False, highlight=False)


@app.command(cls=Command)
def report(path: Path = typer.Argument(..., help="A run, sweep or evaluation output directory.")):
    """Write report.md and report.html (with PNG plots) for a run, a sweep or one evaluation.

    Run: the before/after table, bars with CIs, the loss curve. Sweep: the paper-style plots and paired effects.
    Evaluation: results.md with the paper's normalized average."""
    from .experiments.report import report as make_report
    with guard():
        r = make_report(path)
    out.print(Path(r["markdown"]).read_text(), markup=False, highlight=False)
    out.print(f"wrote {r['markdown']} and {r['html']}", markup=False, highlight=False)


@app.command("rescore", cls=Command)
def rescore_cmd(eval_dir: Path = typer.Argument(..., help="An evaluation output directory (results.json, "
                                                          "predictions.jsonl)."),
                config: Path = typer.Argument(..., help="The config it ran (an eval config, or a run config's eval "
                                                        "section).")):
    """Score an evaluation's recorded outputs again with the current extraction and scoring rules (no model)."""
    from .evaluate.harness import load_eval_config, results_table
    from .experiments.rescore import rescore
    with guard(lambda: "nothing was written"):
        res = rescore(eval_dir, load_eval_config(config), file=config, base=config.parent)
    out.print(results_table(res), markup=False, highlight=False)


@data_app.command("list", cls=Command)
def data_list():
    """Every dataset flanlab reads: Hub repo, revision, size, license, and where it is read from here."""
    from .data.catalog import BENCHMARKS, FLAN2022_LICENSE, FLAN2022_REPOS
    from .datapaths import data_root
    root = data_root()
    rows = [(b.name, b.repo, b.revision, b.size, b.license,
             str(root / b.local) if root is not None and (root / b.local).exists() else "Hub")
            for b in BENCHMARKS.values()]
    rows += [(f"flan2022/{k}", repo, "main", size, FLAN2022_LICENSE, "FLANLAB_DATA (offline part)" if root else "Hub")
             for k, (repo, size) in FLAN2022_REPOS.items()]
    print("\t".join(("name", "hub repo", "revision", "size", "license", "read from")))
    for r in rows:
        print("\t".join(r))


@data_app.command("fetch", cls=Command)
def data_fetch(name: str = typer.Argument(..., help="A benchmark (mmlu, bbh, mgsm, tydiqa, gsm8k, "
                                                    "realtoxicityprompts), 'benchmarks' (all of them) or 'flan2022'."),
               configs: str = typer.Option("", "--configs", help="Comma-separated subjects/tasks/languages "
                                                                 "(default: all)."),
               revision: Optional[str] = typer.Option(None, "--revision", help="Hub branch, tag or commit.")):
    """Download into the Hugging Face cache what flanlab reads, so later runs work offline (HF_HUB_OFFLINE=1)."""
    from .data.catalog import BENCHMARKS, COLLECTION_FILES, FLAN2022_REPOS
    from .data import hub
    from .data.resolve import describe, resolve_benchmark
    with guard():
        if name == "flan2022":
            for key, (repo, size) in FLAN2022_REPOS.items():
                log_line(f"[data] flan2022/{key}: {repo} ({size})")
                snap = hub.fetch(repo, [COLLECTION_FILES], [(COLLECTION_FILES,)], revision=revision or "main",
                                 name="flan2022")
                log_line(f"[data] flan2022/{key}: {snap.source}")
            return
        names = list(BENCHMARKS) if name == "benchmarks" else [name]
        for n in names:
            if n not in BENCHMARKS:
                from .config import did_you_mean
                raise FlanlabError(f"unknown dataset '{n}'{did_you_mean(n, [*BENCHMARKS, 'benchmarks', 'flan2022'])}",
                                   field="name")
            _, prov = resolve_benchmark(n, configs=[c for c in configs.split(",") if c] or None, source="hub",
                                        revision=revision)
            log_line(f"[data] {n}: {describe(prov)}")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
