"""The finetuning loop: packed batches, loss on targets only, Adafactor or AdamW, constant LR
with warmup, gradient accumulation, atomic HF-format checkpoints, exact resume and DDP.

Data order is a pure function of (seed, epoch): the mixture is tokenized, permuted per epoch and
packed deterministically, and global step s always reads the same rows, so `resume` continues
bit-identically. Loss normalisation is by the number of target tokens in the whole global step
(all micro-batches, all ranks), so N processes compute the same update as one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..config import StrictModel
from ..utils import atomic_write_text
from ..errors import FlanlabError
from ..mixture import read_mixture
from ..models.build import (ModelSpec, base_model, build_model, count_params, fuse_gelu, is_encoder_decoder,
                            save_pretrained)
from ..models.packed import PackedForward, collate, loss_sum
from .packing import pack, tokenize_pair


class TrainConfig(StrictModel):
    mixture: str = "runs/mixture"
    output: str = "runs/train"
    model: ModelSpec = Field(default_factory=ModelSpec)
    seed: int = 0
    steps: int = Field(200, gt=0)
    batch_size: int = Field(16, gt=0, description="packed rows per optimizer step, across all processes")
    grad_accum: int = Field(1, gt=0)
    max_input_len: int = Field(256, gt=1)
    max_target_len: int = Field(128, gt=1)
    packing: bool = True
    # capacity of a packed row (defaults: the truncation lengths); for decoder-only rows the sum is the row length.
    # On the per-segment path (T5, Llama) rows only decide how many examples a step holds; on the dense-mask path
    # set them to the data's input:target ratio so neither side of a T5 row runs half empty.
    row_input_len: int | None = Field(None, gt=1)
    row_target_len: int | None = Field(None, gt=1)
    # batch packed rows of similar length together (within windows of 64 steps, window order shuffled per epoch),
    # so on the dense-mask path a step of short-target rows is not padded to the longest CoT target; deterministic
    # per (seed, epoch). The per-segment path has no padding to save.
    group_by_length: bool = False
    optimizer: Literal["adafactor", "adamw"] = "adafactor"
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    save_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)
    resume: bool = True
    tensorboard: bool = True
    max_examples: int | None = None
    threads: int | None = None
    # recompute each block's activations in the backward pass: less memory (longer rows, bigger models), ~30% more time
    gradient_checkpointing: bool = False
    # run packed rows as one unpadded stream with attention per segment (T5, Llama); false: dense L x L attention with
    # segment masks (any architecture). Same loss and gradients (tested); a speed switch kept for benchmarks.
    segment_attention: bool = True
    # T5's gelu_new computed by one fused kernel (models.fuse_gelu; the same function, ~8% faster steps on t5-1m)
    fused_gelu: bool = True


def enable_activation_checkpointing(model, kwargs: dict) -> None:
    """transformers >= 5 names it activation_checkpointing_enable (gradient_checkpointing_enable is deprecated)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _dist():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def init_distributed():
    """Join the process group that torchrun / accelerate launch describe in the environment."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return _dist()


class DataStream:
    """Deterministic packed batches: step -> list of rows."""

    def __init__(self, cfg: TrainConfig, tok, encoder_decoder: bool):
        self.cfg, self.ed = cfg, encoder_decoder
        recs = list(read_mixture(cfg.mixture))
        if cfg.max_examples:
            recs = recs[: cfg.max_examples]
        if not recs:
            raise FlanlabError("mixture has no examples", file=cfg.mixture)
        self.examples = [tokenize_pair(tok, r["inputs"], r["targets"], cfg.max_input_len, cfg.max_target_len, encoder_decoder)
                         for r in recs]
        self.rows_per_step = cfg.batch_size * cfg.grad_accum
        self._rows: tuple[int, list] | None = None  # (epoch, rows): one epoch in memory
        self._steps_in_epoch: dict[int, int] = {}  # epoch -> whole steps it holds

    def epoch_rows(self, epoch: int) -> list:
        if self._rows is None or self._rows[0] != epoch:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.examples))
            exs = [self.examples[i] for i in order]
            c = self.cfg
            rows = (pack(exs, self.ed, max(c.row_input_len or 0, c.max_input_len), max(c.row_target_len or 0, c.max_target_len))
                    if c.packing else [[e] for e in exs])
            if c.group_by_length:
                rows = group_rows(rows, self.rows_per_step, self.ed, np.random.default_rng([c.seed, epoch, 1]))
            self._rows = (epoch, rows)
            self._steps_in_epoch[epoch] = len(rows) // self.rows_per_step
            if self._steps_in_epoch[epoch] == 0:
                raise FlanlabError(f"mixture packs into {len(rows)} rows, fewer than one step's {self.rows_per_step}",
                                   file=self.cfg.mixture, field="batch_size")
        return self._rows[1]

    def _steps(self, epoch: int) -> int:
        if epoch not in self._steps_in_epoch:
            self.epoch_rows(epoch)
        return self._steps_in_epoch[epoch]

    def step_rows(self, step: int) -> list:
        """Rows for global step `step` (0-based); steps never straddle epochs (a short tail is dropped)."""
        e, s = 0, step
        while s >= self._steps(e):
            s -= self._steps(e)
            e += 1
        return self.epoch_rows(e)[s * self.rows_per_step:(s + 1) * self.rows_per_step]


def group_rows(rows: list, per_step: int, encoder_decoder: bool, rng, window_steps: int = 64) -> list:
    """Within each window of `window_steps` steps, sort rows by length (decoder length first for T5) and cut
    them into steps; then shuffle the order of the steps. Every row is kept exactly once."""
    def key(r):
        dec = sum(len(e.targets) for e in r)
        enc = sum(len(e.inputs) for e in r)
        return (dec, enc) if encoder_decoder else (enc + dec, 0)
    out, w = [], per_step * window_steps
    for i in range(0, len(rows), w):
        block = sorted(rows[i:i + w], key=key)
        steps = [block[j:j + per_step] for j in range(0, len(block), per_step)]
        full, tail = [st for st in steps if len(st) == per_step], [st for st in steps if len(st) < per_step]
        for k in rng.permutation(len(full)):
            out += full[k]
        for st in tail:
            out += st
    return out


def _optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=cfg.lr, relative_step=False, scale_parameter=False, warmup_init=False,
                         weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def load_train_config(path: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The training config of a file (top level or under 'train:') with key=value overrides, validated."""
    from ..config import apply_overrides, read_section, validate
    data, sec = read_section(path, "train")
    cfg = validate(TrainConfig, data, file=path, prefix=sec)
    if overrides:
        cfg = validate(TrainConfig, apply_overrides(cfg.model_dump(), overrides), file="<command line>")
    return cfg


def _mixture_identity(path: str) -> str:
    """The mixture by content (its manifest fingerprint), not by where it lies: a moved run still hits its cache."""
    try:
        return json.loads((Path(path) / "manifest.json").read_text())["fingerprint"]
    except (OSError, KeyError, json.JSONDecodeError):
        return Path(path).name


def config_fingerprint(cfg: TrainConfig) -> str:
    d = cfg.model_dump(exclude={"output", "resume", "tensorboard", "save_every", "keep_checkpoints", "log_every", "threads",
                                "steps", "mixture", "gradient_checkpointing"})
    d["mixture"] = _mixture_identity(cfg.mixture)
    for key, default in (("group_by_length", False), ("segment_attention", True), ("fused_gelu", True)):
        if d.get(key) == default:  # added later: hashed only when not the default, so earlier runs stay cached
            d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _publish_dir(tmp: Path, dest: Path) -> None:
    """Put a fully written directory in place of `dest` (readers see the old one or the new one)."""
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(tmp, dest)


def save_checkpoint(out: Path, step: int, model, tok, opt, sched, cfg: TrainConfig) -> Path:
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(tmp / "adapter"))
    save_pretrained(model, tok, tmp)
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                "fingerprint": config_fingerprint(cfg)}, tmp / "trainer_state.pt")
    with open(tmp / "trainer_state.pt", "rb") as f:
        os.fsync(f.fileno())
    _publish_dir(tmp, final)
    atomic_write_text(out / "latest", final.name)
    ckpts = sorted((p for p in out.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    for old in ckpts[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    f = out / "latest"
    if f.is_file():
        p = out / f.read_text().strip()
        if (p / "trainer_state.pt").is_file():
            return p
    return None


def _load_weights(model, ckpt: Path):
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
        return
    from safetensors.torch import load_file
    sd = load_file(str(ckpt / "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad = [k for k in missing if "embed_tokens" not in k and "lm_head" not in k]
    if bad or unexpected:
        raise FlanlabError(f"checkpoint does not match the model: missing {bad[:3]}, unexpected {unexpected[:3]}", file=ckpt)


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resume starts from), so each step is logged once."""
    if path.is_file():
        keep = []
        for line in path.read_text().splitlines(keepends=True):
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
            except json.JSONDecodeError:  # a line torn by the kill
                continue
        atomic_write_text(path, "".join(keep))


def train(cfg: TrainConfig, *, progress: bool = True, file: object = "<train config>", stop_after: int | None = None,
          log=lambda message: None) -> dict:
    """Run (or resume) training. Returns a summary dict; rank 0 writes checkpoints, metrics.jsonl and final/."""
    dist, rank, world = init_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise FlanlabError(f"batch_size {cfg.batch_size} is not divisible by {world} processes", file=file, field="batch_size")
    out = Path(cfg.output)
    final_dir = out / "final"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".tmp-*"):  # half-written checkpoints of a killed run
            shutil.rmtree(stale, ignore_errors=True)
    summary_path = out / "summary.json"
    if (final_dir / "config.json").is_file() and summary_path.is_file():
        s = json.loads(summary_path.read_text())
        if s.get("fingerprint") == config_fingerprint(cfg) and s.get("steps") == cfg.steps:
            return s  # stage cache: this exact training already finished
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model, tok = build_model(cfg.model, seed=cfg.seed)
    if cfg.fused_gelu:
        fuse_gelu(model)
    if cfg.gradient_checkpointing:
        from ..models.segattn import recompute_context  # recomputed blocks re-enter the per-segment attention
        enable_activation_checkpointing(base_model(model), {"use_reentrant": False, "context_fn": recompute_context})
    ed = is_encoder_decoder(model)
    data = DataStream(cfg, tok, ed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(cfg, params)
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    start = 0
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        if state["fingerprint"] != config_fingerprint(cfg):
            raise FlanlabError(f"{ckpt} was written by a different training config; use another output or resume: false",
                               file=file, field="output")
        _load_weights(model, ckpt)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start = state["step"]
        if rank == 0:
            log(f"[train] resuming from {ckpt.name} (step {start} of {cfg.steps})")
            _trim_metrics(out / "metrics.jsonl", start)
    ddp_model = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel
        ddp_model = DistributedDataParallel(PackedForward(model, cfg.segment_attention))
    model.train()
    writer = None
    if rank == 0 and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
        except Exception:  # tensorboard not installed
            writer = None
    metrics = open(out / "metrics.jsonl", "a") if rank == 0 else None
    t0 = time.time()
    tokens_seen = 0
    window_tokens, window_loss, window_tgt, window_t = 0, 0.0, 0, time.time()
    last_loss = float("nan")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    prog = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                    TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn(), disable=not progress or rank != 0, transient=True)
    with prog:
        bar = prog.add_task("train", total=cfg.steps, completed=start, loss="-", tps="-")
        for step in range(start, cfg.steps):
            rows = data.step_rows(step)
            micro = [rows[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(cfg.grad_accum)]
            # every rank knows every micro-batch, so the global target-token count is exact without communication
            total_tgt = sum(len(e.targets) for r in rows for e in r)
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for mi, mb in enumerate(micro):
                mine = mb[rank::world]
                batch = collate(mine, ed, tok.pad_id)
                sync = mi == len(micro) - 1
                ctx = ddp_model.no_sync() if (dist is not None and not sync) else contextlib.nullcontext()
                with ctx:
                    ls, n = loss_sum(ddp_model, batch, cfg.segment_attention)
                    (ls * world / total_tgt).backward()  # DDP averages over ranks
                step_loss += ls.item()
                nonpad = sum(len(e.inputs) + len(e.targets) for r in mine for e in r)
                window_tokens += nonpad
                tokens_seen += nonpad
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            if dist is not None:
                t = torch.tensor([step_loss, float(window_tokens)])
                dist.all_reduce(t)
                step_loss, wt = t[0].item(), t[1].item()
            else:
                wt = window_tokens
            last_loss = step_loss / total_tgt
            window_loss += step_loss
            window_tgt += total_tgt
            done = step + 1
            log_now = done % cfg.log_every == 0 or done == cfg.steps
            if rank == 0:
                if log_now:
                    el = time.time() - window_t
                    rec = {"step": done, "loss": round(window_loss / window_tgt, 5), "lr": sched.get_last_lr()[0],
                           "tokens_per_s": round(wt / el, 1) if el > 0 else None, "elapsed": round(time.time() - t0, 2)}
                    metrics.write(json.dumps(rec) + "\n")
                    metrics.flush()
                    if writer:
                        writer.add_scalar("loss", rec["loss"], done)
                        writer.add_scalar("tokens_per_s", rec["tokens_per_s"] or 0, done)
                    prog.update(bar, loss=f"{rec['loss']:.4f}", tps=f"{rec['tokens_per_s']:,.0f}")
                    if progress and not prog.console.is_terminal:  # piped or logged: periodic lines instead of a bar
                        eta = (time.time() - t0) / (done - start) * (cfg.steps - done)
                        log(f"[train] step {done}/{cfg.steps} loss {rec['loss']:.4f} "
                            f"{rec['tokens_per_s'] or 0:,.0f} tok/s ETA {eta:.0f}s")
                prog.update(bar, completed=done)
                if done % cfg.save_every == 0 or done == cfg.steps:
                    save_checkpoint(out, done, model, tok, opt, sched, cfg)
            if log_now:
                window_tokens, window_loss, window_tgt, window_t = 0, 0.0, 0, time.time()
            if dist is not None and (done % cfg.save_every == 0):
                dist.barrier()
            if stop_after is not None and done >= stop_after:
                break
    if metrics:
        metrics.close()
    if writer:
        writer.close()
    summary = {"fingerprint": config_fingerprint(cfg), "steps": cfg.steps, "final_loss": last_loss,
               "params": count_params(model), "world_size": world, "encoder_decoder": ed,
               "seconds": round(time.time() - t0, 2), "resumed_from": start,
               "train_tokens_this_run": tokens_seen}  # non-pad tokens this process consumed in this invocation
    if rank == 0 and (stop_after is None or stop_after >= cfg.steps):
        tmp = out / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(model, tok, tmp)
        _publish_dir(tmp, final_dir)
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
    if dist is not None:
        dist.barrier()
    return summary

