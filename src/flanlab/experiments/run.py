"""`flanlab run`: mix -> train -> eval (before and after finetuning), each stage cached.

Stage caches: the mixture is reused when its config fingerprint matches; training is skipped when
final/ and summary.json match the training config (and resumes from the latest checkpoint if it
was interrupted); evaluation requests are answered from the on-disk request cache.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from pydantic import Field

from ..config import StrictModel
from ..errors import FlanlabError
from ..outlock import output_lock
from ..evaluate.harness import BenchmarkSpec, DecodingSpec, EvalConfig, EvalResult, run_eval
from ..evaluate.progress import EvalProgress
from ..evaluate.scoring import PROMPTING_NAMES, paper_normalized_average
from ..memory import peak_rss_mb, reset_peak_rss
from .compare import compare, comparison_table, write_comparison
from ..mixture import MixConfig, build_mixture
from ..mixture.mix import MixResult
from ..models.build import ModelSpec
from ..train.trainer import TrainConfig, TrainResult, finished_training, train
from ..utils import atomic_write_text, code_version, markdown_table


def default_eval() -> EvalConfig:
    return EvalConfig(benchmarks=[
        BenchmarkSpec(name="synthetic", label="held_in", subsets=["held_in"], modes=["direct", "cot", "cot_sc"], limit=3),
        BenchmarkSpec(name="synthetic", label="held_out", subsets=["held_out"], modes=["direct", "cot", "cot_sc"],
                      limit=12),
    ], decoding=DecodingSpec(cot_max_new_tokens=160, sc_samples=8, temperature=0.7, top_k=40))


class RunConfig(StrictModel):
    output: str = "runs/default"
    mix: MixConfig = Field(default_factory=lambda: MixConfig(total_examples=20000, max_input_len=256))
    # From-scratch miniature: AdamW. (The paper's Adafactor, without momentum, is meant for finetuning pretrained
    # checkpoints; from random init it reached loss 1.80 vs AdamW's 1.27 after 400 steps here.)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=16, optimizer="adamw", lr=1e-3, save_every=500, log_every=50, max_input_len=256,
        model=ModelSpec(preset="t5-1m")))
    eval: EvalConfig = Field(default_factory=default_eval)
    baseline: bool = True  # also evaluate the model before instruction finetuning

    def resolved(self) -> "RunConfig":
        """Stage inputs/outputs placed under `output`; the registry is shared by mix and eval."""
        out = Path(self.output)
        c = self.model_copy(deep=True)
        c.mix.output = str(out / "mixture")
        c.train.mixture = c.mix.output
        c.train.output = str(out / "train")
        c.eval.registry = c.mix.registry
        if c.mix.tokenizer is None and c.train.model.checkpoint:  # mixture lengths in the model's own tokens
            c.mix.tokenizer = c.train.model.checkpoint
        return c


def run(cfg: RunConfig, *, progress: bool = True, log=print, base: Path | None = None, console=None,
        nproc: int = 1) -> dict:
    """`nproc` > 1 trains in that many processes (torchrun, as `flanlab train --nproc`); evaluation runs in this one."""
    with output_lock(cfg.output):
        return _run(cfg, progress=progress, log=log, base=base, console=console, nproc=nproc)


def train_stage(cfg: TrainConfig, nproc: int, *, progress: bool, log) -> TrainResult:
    """Train in this process, or in `nproc` torchrun processes from the resolved config written beside the output."""
    if nproc <= 1:
        return train(cfg, progress=progress, log=log)
    cached = finished_training(cfg)
    if cached is not None:
        return cached
    import yaml
    from ..runtime import torchrun
    path = Path(cfg.output).parent / "train_config.yaml"
    path.write_text(yaml.safe_dump({"train": cfg.model_dump()}, sort_keys=False))
    code = torchrun(nproc, "flanlab.train.launch", str(path))
    if code:
        raise FlanlabError(f"training in {nproc} processes failed (exit code {code}; its output is above)",
                           file=path)
    done = finished_training(cfg)
    if done is None:
        raise FlanlabError(f"training in {nproc} processes ended without a summary of this config", file=path)
    return replace(done, cached=False)  # the workers trained it just now


def _run(cfg: RunConfig, *, progress: bool, log, base: Path | None, console, nproc: int) -> dict:
    cfg = cfg.resolved()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(out / "run.json")
    with clock("mix") as stage:
        mix = stage.done(build_mixture(cfg.mix, progress=progress, base=base))
    log(f"[mix] {mix.examples} examples from {len(mix.manifest['per_task'])} tasks ({clock.said('mix')})")
    with clock("train") as stage:
        trained = stage.done(train_stage(cfg.train, nproc, progress=progress, log=log))
    summary = trained.summary
    log(f"[train] {summary['params']:,} params, {cfg.train.steps} steps, final loss {trained.final_loss:.4f} "
        f"(mean over the last {summary.get('final_loss_steps', 1)} steps, as the last step line) ({clock.said('train')})")
    evals: dict[str, EvalResult] = {}
    for name, ecfg in eval_stages(cfg):
        with clock(f"eval_{name}") as stage:
            bar = EvalProgress(log, console=console) if progress else None
            evals[name] = stage.done(run_eval(ecfg, base=base, progress=bar, stage=f"eval:{name}"))
        avg = evals[name].normalized_average
        log(f"[eval:{name}] normalized average {'-' if avg is None else f'{avg:.2f}'} ({clock.said(f'eval_{name}')})")
    report = {**clock.provenance(), "config": cfg.model_dump(),
              "mixture": {k: mix.manifest[k] for k in ("examples", "per_format", "dropped_contaminated")},
              "train": summary, "results": {name: e.results for name, e in evals.items()}}
    if cfg.baseline:  # before vs after on the same items, paired (flanlab compare)
        report["comparison"] = compare(evals["before"], evals["after"], names=("before", "after"))
        write_comparison(report["comparison"], out / "compare.json")
        write_generations(out, [s.label or s.name for s in cfg.eval.benchmarks if s.name == "generation"],
                          evals["before"], evals["after"])
    atomic_write_text(out / "run.json", json.dumps(report, indent=1))
    atomic_write_text(out / "summary.md", run_table(report))
    return report


def write_generations(out: Path, labels: list[str], before: EvalResult, after: EvalResult) -> None:
    """generations.md / .json: each open-ended prompt's responses before and after finetuning, side by side."""
    if not labels:
        return
    from ..evaluate.generation import side_by_side
    from .compare import by_mode
    before, after = by_mode(before.predictions), by_mode(after.predictions)
    pages, pairs = [], {}
    for label in labels:
        b, a = before.get((label, "response"), []), after.get((label, "response"), [])
        pages.append(side_by_side(b, a))
        pairs[label] = [{"id": p["id"], "prompt": p["prompt"], "before": p["response"],
                         "after": next((q["response"] for q in a if q["id"] == p["id"]), None)} for p in b]
    atomic_write_text(out / "generations.md", "\n".join(pages))
    atomic_write_text(out / "generations.json", json.dumps(pairs, indent=1, ensure_ascii=False))


def eval_stages(cfg: RunConfig) -> list[tuple[str, EvalConfig]]:
    """("before", config) when the run has a baseline, then ("after", config): the finetuned final/ checkpoint."""
    out = Path(cfg.output)
    stages = [("after", cfg.eval.model_copy(update={"checkpoint": str(Path(cfg.train.output) / "final"), "preset": None,
                                                     "output": str(out / "eval_after")}))]
    if cfg.baseline:
        before = cfg.eval.model_copy(update={"output": str(out / "eval_before")})
        if cfg.train.model.checkpoint:
            before.checkpoint, before.preset = cfg.train.model.checkpoint, None
        else:  # no pretrained weights offline: "before" is the same initialisation, untrained
            before.checkpoint, before.preset = None, cfg.train.model.preset
            before.seed = cfg.train.seed
        stages.insert(0, ("before", before))
    return stages


class StageClock:
    """Seconds and peak resident memory (MiB) per stage. A stage answered from its cache (a mixture or training
    already finished, an evaluation answered without a forward pass) keeps the time and memory its first run took,
    from the previous run.json; so do the code version and the process's peak memory when every stage was cached."""

    def __init__(self, previous: Path):
        try:
            self.previous = json.loads(previous.read_text())
        except (OSError, json.JSONDecodeError):
            self.previous = {}
        self.timing: dict[str, float] = {}
        self.memory: dict[str, int] = {}  # peak RSS (MiB) while the stage ran
        self.cached: dict[str, bool] = {}

    @contextmanager
    def __call__(self, name: str):
        stage = _Stage()
        t = time.time()
        reset_peak_rss()
        yield stage
        self.cached[name] = stage.cached
        before = self.previous.get("timing", {}).get(name)
        self.timing[name] = before if stage.cached and before is not None else round(time.time() - t, 1)
        before = self.previous.get("peak_rss_mb_by_stage", {}).get(name)
        self.memory[name] = before if stage.cached and before is not None else peak_rss_mb()

    def said(self, name: str) -> str:
        """A stage's log-line figures: "12.3s, peak RSS 1.4 GB" ("cached" when its cache answered)."""
        return (f"{self.timing[name]}s, peak RSS {self.memory[name] / 1024:.1f} GB"
                + (", cached: figures of its first run" if self.cached[name] else ""))

    def provenance(self) -> dict:
        timing = dict(self.timing)
        timing["total"] = round(sum(timing.values()), 1)
        if all(self.cached.values()) and self.previous.get("code"):
            kept = {k: v for k, v in self.previous["timing"].items() if k == "peak_rss_mb"}
            return {"code": self.previous["code"], "timing": {**timing, **kept}, "peak_rss_mb_by_stage": self.memory}
        timing["peak_rss_mb"] = max(self.memory.values(), default=0)
        return {"code": code_version(), "timing": timing, "peak_rss_mb_by_stage": self.memory}


class _Stage:
    cached = False

    def done(self, result: "MixResult | TrainResult | EvalResult"):
        """The stage's result. Each stage says itself whether its cache answered: the mixture and the training by
        the fingerprint of their config in the output, an evaluation when every answer came from its answer cache."""
        self.cached = result.cached
        return result


def run_table(report: dict) -> str:
    """A header line (model, data, steps, wall time), then before/after with paired CIs when the run evaluated
    both, else the one evaluation's scores."""
    table = comparison_table(report["comparison"]) if report.get("comparison") else summary_table(report["results"])
    return (run_header(report) + "\n\n" + table) if "config" in report and "mixture" in report else table


def run_header(report: dict) -> str:
    model = report["config"]["train"]["model"]
    what = model.get("checkpoint") or model.get("preset")
    lora = f" + LoRA r={model['lora']['r']}" if model.get("lora") else ""
    t, train = report.get("timing", {}), report["train"]
    total = t.get("total", sum(v for k, v in t.items() if k in ("mix", "train") or k.startswith("eval_")))
    wall = f"{total / 60:.1f} min" if total else "-"
    return (f"**{what}{lora}**, {train['steps']} steps (final loss {train['final_loss']:.3f}) on "
            f"{report['mixture']['examples']:,} mixture examples; wall time {wall}"
            + (f", peak RSS {t['peak_rss_mb'] / 1024:.1f} GB" if "peak_rss_mb" in t else "")
            + (" (" + ", ".join(f"{k.replace('_', ' ')} {v / 1024:.1f}" for k, v in by_stage.items()) + " GB)"
               if (by_stage := report.get("peak_rss_mb_by_stage")) else "") + ".")


def summary_table(results: dict) -> str:
    """Before/after finetuning per benchmark and prompting (the paper's Table 5 layout), with the change."""
    stages = [s for s in ("before", "after") if s in results]
    both = len(stages) == 2
    rows = []
    for bench, modes in results[stages[-1]]["benchmarks"].items():
        for mode in modes:
            got = [results[s]["benchmarks"][bench][mode] for s in stages]
            cells = [f"{r['score']:.1f} [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]" for r in got]
            change = [f"{got[1]['score'] - got[0]['score']:+.1f}"] if both else []
            rows.append([f"{bench} (n={modes[mode]['n']})", PROMPTING_NAMES.get(mode, mode), *cells, *change])
    averages = [paper_normalized_average(results[s]["benchmarks"])["value"] for s in stages]
    if None not in averages:
        rows.append(["normalized average (the paper's six entries)", "", *(f"{a:.1f}" for a in averages),
                     *([f"{averages[1] - averages[0]:+.1f}"] if both else [])])
    header = ["benchmark", "prompting", *(f"{s} finetuning" for s in stages), *(["change"] if both else [])]
    return markdown_table(header, rows) + ("\nScores: exact match in % (TyDiQA: its F1 is in each eval's "
                                           "results.json), 95% bootstrap CI in brackets.\n")
