"""`flanlab sweep`: a grid over number of finetuning tasks x model size x CoT share (x seeds).

Every cell is a full run (mix -> train -> eval) with the same number of training steps and
mixture size, so cells differ only in the swept factor. Task subsets are nested: the first n
tasks of one seeded shuffle of the held-in tasks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from ..config import StrictModel
from ..mixture import CollectionSpec
from .run import RunConfig, run


class SweepConfig(StrictModel):
    output: str = "runs/sweep"
    base: RunConfig = Field(default_factory=RunConfig)
    num_tasks: list[int] = Field(default_factory=lambda: [4, 16, 64])
    presets: list[str] = Field(default_factory=lambda: ["t5-1m", "t5-5m"])
    cot_shares: list[float] = Field(default_factory=lambda: [0.0, 0.3])
    seeds: list[int] = Field(default_factory=lambda: [0])
    task_order_seed: int = 0


def task_subsets(cfg: SweepConfig) -> dict[int, list[str]]:
    reg = cfg.base.mix.registry.build()
    pool = sorted(t.name for t in reg if t.collection == "synthetic" and not t.held_out and not t.benchmark_source)
    order = [pool[i] for i in np.random.default_rng(cfg.task_order_seed).permutation(len(pool))]
    return {n: order[: min(n, len(order))] for n in cfg.num_tasks}


def cell_name(n: int, preset: str, share: float, seed: int) -> str:
    return f"tasks{n}_{preset}_cot{share:g}_seed{seed}"


def sweep(cfg: SweepConfig, *, progress: bool = True, log=print) -> list[dict]:
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    subsets = task_subsets(cfg)
    rows = []
    cells = [(n, p, c, s) for p in cfg.presets for n in cfg.num_tasks for c in cfg.cot_shares for s in cfg.seeds]
    for k, (n, preset, share, seed) in enumerate(cells, 1):
        name = cell_name(n, preset, share, seed)
        log(f"== cell {k}/{len(cells)}: {name}")
        rc = cfg.base.model_copy(deep=True)
        rc.output = str(out / name)
        rc.baseline = False
        rc.mix.seed = seed
        rc.mix.collections = [CollectionSpec(name="synthetic", tasks=subsets[n], cap=rc.mix.collections[0].cap)]
        rc.mix.formats.cot_share = share
        rc.train.seed = seed
        rc.train.model.preset = preset
        rep = run(rc, progress=progress, log=log)
        res = rep["results"]["after"]["benchmarks"]
        rows.append({"cell": name, "num_tasks": len(subsets[n]), "preset": preset, "params": rep["train"]["params"],
                     "cot_share": share, "seed": seed, "final_loss": rep["train"]["final_loss"],
                     "train_seconds": rep["timing"]["train"],
                     "scores": {b: {m: {"score": r["score"], "ci95": r["ci95"]} for m, r in modes.items()}
                                for b, modes in res.items()}})
        (out / "sweep.json").write_text(json.dumps({"config": cfg.model_dump(), "rows": rows}, indent=1))
    return rows

