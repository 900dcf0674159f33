"""Where training metrics go: metrics.jsonl (one line per logged step, always), TensorBoard if installed, Weights &
Biases if asked for, and either a progress bar (on a terminal) or periodic log lines (piped / logged)."""
from __future__ import annotations

import json
import time
from pathlib import Path


def _wandb_run(out: Path, project: str, config: dict | None):
    """A W&B run for this training output: its id is derived from the output, so a resumed run logs into the same
    one (resume="allow"); files under out/wandb."""
    try:
        import wandb
    except ModuleNotFoundError:
        from ..errors import FlanlabError
        raise FlanlabError('wandb: true needs Weights & Biases: pip install "flanlab[wandb]"', field="wandb") from None
    import hashlib
    run_id = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
    return wandb.init(project=project, id=run_id, resume="allow", dir=str(out), config=config or {},
                      name=out.name, reinit="finish_previous")


class MetricsSink:
    def __init__(self, out: Path, *, enabled: bool, tensorboard: bool, progress: bool, total: int, start: int,
                 log=lambda message: None, wandb_project: str | None = None, config: dict | None = None):
        self.enabled, self.log, self.total, self.start = enabled, log, total, start
        self.wandb = _wandb_run(out, wandb_project, config) if enabled and wandb_project else None
        self.t0 = time.time()
        self.file = open(out / "metrics.jsonl", "a") if enabled else None
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(out / "tb"))
            except ModuleNotFoundError:  # optional: metrics.jsonl has the same numbers
                log("[train] TensorBoard logging off (pip install tensorboard turns it on); metrics.jsonl has every "
                    "logged step")
            except Exception as e:  # cannot write: say so once, keep training
                log(f"[train] TensorBoard logging off: {type(e).__name__}: {e}")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                            TimeRemainingColumn(), disable=not progress or not enabled, transient=True)
        self.lines = progress and enabled and not self.bar.console.is_terminal  # log lines instead of a bar
        self.task = self.bar.add_task("train", total=total, completed=start, loss="-", tps="-")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()

    def record(self, step: int, loss: float, lr: float, tokens: float, seconds: float) -> None:
        """One logged step: mean target-token loss and non-pad tokens/s over the window since the last record."""
        if not self.enabled:
            return
        rec = {"step": step, "loss": round(loss, 5), "lr": lr,
               "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
               "elapsed": round(time.time() - self.t0, 2)}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.writer:
            self.writer.add_scalar("loss", rec["loss"], step)
            self.writer.add_scalar("tokens_per_s", rec["tokens_per_s"] or 0, step)
        if self.wandb is not None:
            self.wandb.log({"loss": rec["loss"], "lr": lr, "tokens_per_s": rec["tokens_per_s"] or 0}, step=step)
        self.bar.update(self.task, loss=f"{rec['loss']:.4f}", tps=f"{rec['tokens_per_s'] or 0:,.0f}")
        if self.lines:
            eta = (time.time() - self.t0) / (step - self.start) * (self.total - step)
            self.log(f"[train] step {step}/{self.total} loss {rec['loss']:.4f} {rec['tokens_per_s'] or 0:,.0f} tok/s "
                     f"ETA {eta:.0f}s")

    def advance(self, step: int) -> None:
        self.bar.update(self.task, completed=step)


def trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resume starts from): each step logged once."""
    from ..utils import atomic_write_text
    if path.is_file():
        keep = []
        for line in path.read_text().splitlines(keepends=True):
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
            except json.JSONDecodeError:  # a line torn by the kill
                continue
        atomic_write_text(path, "".join(keep))
