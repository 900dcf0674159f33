"""Evaluation progress: a live bar on a terminal, periodic log lines otherwise (requests done/total, items/s, ETA)."""
from __future__ import annotations

import time
from typing import Callable


class EvalProgress:
    """engine.progress callback for one labelled batch of requests (`label` says which benchmark and mode)."""

    def __init__(self, log: Callable[[str], None], every: float = 30.0, console=None):
        self.log, self.every = log, every
        self.console = console
        self.label, self.t0, self.last, self.start_done = "", 0.0, 0.0, 0
        self._bar = None

    def begin(self, label: str) -> None:
        self.finish()
        self.label, self.t0, self.last, self.start_done = label, time.time(), time.time(), -1
        if self.console is not None and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._bar = Progress(TextColumn(label.replace("[", "\\[")), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console,
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=None, rate="")

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        if self.start_done < 0:  # requests answered from the cache don't count towards the rate
            self.start_done = done
        rate = (done - self.start_done) / (now - self.t0) if now > self.t0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, rate=f"{rate:.2f} items/s")
        elif done == total and done > self.start_done or now - self.last >= self.every:
            self.last = now
            self.log(f"{self.label} {done}/{total} requests, {rate:.2f} items/s, ETA {eta:.0f}s")

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
