"""The finetuning loop: packed batches, loss on targets only, Adafactor or AdamW, constant LR
with warmup, gradient accumulation, atomic checkpoints, exact resume, DDP or FSDP, fp32 or bf16 autocast.

Data order is a pure function of (seed, epoch): the mixture is tokenized, permuted per epoch and
packed deterministically, and global step s always reads the same rows, so `resume` continues
bit-identically. Loss normalisation is by the number of target tokens in the whole global step
(all micro-batches, all ranks), so N processes compute the same update as one.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime import configure_threads, threading_record
from ..errors import FlanlabError
from ..utils import code_version
from ..memory import malloc_record, release_freed
from ..outlock import output_lock
from ..models.build import base_model, build_model, count_params, fuse_gelu, is_encoder_decoder
from ..models.device import Processes, autocast, select_device, to_device, usable_precision
from ..models.packed import collate, loss_sum
from . import strategy as placement
from .checkpoints import CheckpointStore, full_state_dict, rng_state
from .config import TrainConfig
from .data import DataStream
from .metrics import MetricsSink, trim_metrics
from .optim import build_optimizer, lr_factor


def enable_activation_checkpointing(model, kwargs: dict) -> None:
    """transformers >= 5 names it activation_checkpointing_enable (gradient_checkpointing_enable is deprecated)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def init_distributed() -> Processes:
    """Join the process group that torchrun / accelerate launch describe in the environment."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes()


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
    d = cfg.model_dump(exclude={"output", "resume", "tensorboard", "wandb", "wandb_project", "save_every", "keep_checkpoints", "log_every",
                                "threads", "steps", "mixture", "gradient_checkpointing", "strategy", "device"})
    d["mixture"] = _mixture_identity(cfg.mixture)
    if cfg.lr_schedule != "constant":  # a decaying rate depends on the last step: another `steps` is another run
        d["steps"] = cfg.steps
    for key, default in (("chat_template", False), ("lr_schedule", "constant"), ("min_lr_ratio", 0.0), ("group_by_length", False), ("segment_attention", True), ("fused_gelu", True),
                         ("precision", "fp32"), ("attention_kernel", "auto"), ("frozen_weights", "fp32")):
        if d.get(key) == default:  # added later: hashed only when not the default, so earlier runs stay cached
            d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_for_training(cfg: TrainConfig):
    """(model, tokenizer) seeded, with the training-time swaps the config asks for."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model, tok = build_model(cfg.model, seed=cfg.seed)
    if cfg.fused_gelu:
        fuse_gelu(model)
    if cfg.frozen_weights == "bf16":
        store_frozen_in_bf16(model)
    if cfg.gradient_checkpointing:
        from ..models.segattn import recompute_context  # recomputed blocks re-enter the per-segment attention
        enable_activation_checkpointing(base_model(model), {"use_reentrant": False, "context_fn": recompute_context})
    return model, tok


def store_frozen_in_bf16(model) -> int:
    """The weights that do not train (a LoRA model's base) stored in bfloat16; trained ones stay fp32 (their
    gradients and AdamW state need the precision). Returns the number of tensors cast."""
    cast = 0
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)
            cast += 1
    return cast


def train_step(model, rows: list, cfg: TrainConfig, encoder_decoder: bool, pad_id: int, rank: int, world: int,
               device: torch.device = torch.device("cpu")) -> tuple[float, int, int]:
    """Forward and backward of one global step (its micro-batches; this rank's share of each). The loss is
    normalised by the target tokens of the whole global step on all ranks, so N processes compute the same update
    as one. Returns (summed loss of this rank, target tokens of the global step, non-pad tokens of this rank)."""
    micro = [rows[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(cfg.grad_accum)]
    # every rank knows every micro-batch, so the global target-token count is exact without communication
    total_targets = sum(len(e.targets) for r in rows for e in r)
    loss_total, tokens = 0.0, 0
    for i, batch_rows in enumerate(micro):
        shard = batch_rows[rank::world]
        batch = to_device(collate(shard, encoder_decoder, pad_id), device)
        with placement.grad_sync(model, last_micro_batch=i == len(micro) - 1):
            with autocast(cfg.precision, device):
                loss, _ = loss_sum(model, batch, cfg.segment_attention)
            (loss * world / total_targets).backward()  # DDP and FSDP average gradients over ranks
        loss_total += loss.item()
        tokens += sum(len(e.inputs) + len(e.targets) for r in shard for e in r)
    return loss_total, total_targets, tokens


@dataclass(frozen=True)
class TrainResult:
    """What the train stage made: summary.json beside final/. `cached`: the output already held a finished training
    of this config's fingerprint, so no step ran."""
    output: Path
    summary: dict
    cached: bool = False

    @property
    def fingerprint(self) -> str:
        return self.summary["fingerprint"]

    @property
    def final_loss(self) -> float:
        return self.summary["final_loss"]

    @property
    def final(self) -> Path:
        return self.output / "final"


def train(cfg: TrainConfig, *, progress: bool = True, file: object = "<train config>",
          log=lambda message: None) -> TrainResult:
    """Run (or resume) training; rank 0 writes checkpoints, metrics.jsonl and final/ (and holds the output's lock:
    a second process on the same output refuses)."""
    with output_lock(cfg.output, enabled=int(os.environ.get("RANK", "0")) == 0):
        return _train(cfg, progress=progress, file=file, log=log)


def _train(cfg: TrainConfig, *, progress: bool, file: object, log) -> TrainResult:
    """The recipe: set up (or find the finished run), resume, loop over steps, publish final/."""
    procs = init_distributed()
    threads = configure_threads(cfg.threads)
    cfg = _as_run(cfg, log if procs.rank == 0 else lambda m: None)
    if cfg.batch_size % procs.world:
        raise FlanlabError(f"batch_size {cfg.batch_size} is not divisible by {procs.world} processes", file=file,
                           field="batch_size")
    store = CheckpointStore(Path(cfg.output), cfg.keep_checkpoints, config_fingerprint(cfg))
    if procs.rank == 0:
        store.out.mkdir(parents=True, exist_ok=True)
        store.remove_stale()
    done_before = _finished(store, cfg.steps)
    if done_before is not None:
        return done_before  # stage cache: this exact training already finished
    run = setup(cfg, procs, store)
    start = resume(run, file=file, log=log)
    t0 = time.time()
    stats = loop(run, start, progress=progress, log=log)
    # final_loss is what the last [train] line and metrics.jsonl's last record say: the mean target-token loss over
    # the last logging window (final_loss_steps steps); last_step_loss is the final step's alone
    summary = {"fingerprint": store.fingerprint, "steps": cfg.steps, **stats, "params": count_params(run.model),
               "world_size": procs.world, "encoder_decoder": run.encoder_decoder, "strategy": cfg.strategy,
               "precision": cfg.precision,
               "frozen_weights": cfg.frozen_weights, "threads": {**threading_record(), "torch": threads, **malloc_record()},
               "seconds": round(time.time() - t0, 2), "resumed_from": start,
               # what this process holds between steps (a sharded tensor counts its local shard)
               "param_bytes_per_rank": placement.resident_bytes(run.model.parameters()),
               "optimizer_bytes_per_rank": placement.resident_bytes(placement.optimizer_tensors(run.opt))}
    publish(run, summary)
    return TrainResult(store.out, summary)


def _as_run(cfg: TrainConfig, log) -> TrainConfig:
    """The config as this machine runs it (and as its fingerprint is taken): bf16 falls back to fp32 where the
    device has no bf16, and frozen bf16 weights, which only make sense under bf16 autocast, fall back with it."""
    precision = usable_precision(cfg.precision, select_device(cfg.device), log)
    return cfg.model_copy(update={"precision": precision,
                                  "frozen_weights": cfg.frozen_weights if precision == "bf16" else "fp32"})


def finished_training(cfg: TrainConfig) -> TrainResult | None:
    """The stage cache, read without training: this config's finished run in its output, or None."""
    run_cfg = _as_run(cfg, lambda m: None)
    return _finished(CheckpointStore(Path(cfg.output), cfg.keep_checkpoints, config_fingerprint(run_cfg)), cfg.steps)


def _finished(store: CheckpointStore, steps: int) -> TrainResult | None:
    summary = store.finished_summary(store.fingerprint, steps)
    return TrainResult(store.out, summary, cached=True) if summary is not None else None


@dataclass
class TrainRun:
    """What the steps of one training run share: config, processes, model (and its wrapped form), optimizer."""
    cfg: TrainConfig
    procs: Processes
    store: CheckpointStore
    device: object
    model: object
    tok: object
    step_model: object
    params: list
    opt: object
    sched: object
    data: DataStream
    encoder_decoder: bool

    @property
    def sharded(self) -> bool:  # sharded checkpoints even in one process, so any process count can resume
        return self.cfg.strategy == "fsdp"


def setup(cfg: TrainConfig, procs: Processes, store: CheckpointStore) -> TrainRun:
    device = select_device(cfg.device)
    model, tok = build_for_training(cfg)
    encoder_decoder = is_encoder_decoder(model)
    data = DataStream(cfg, tok, encoder_decoder)
    step_model = placement.wrap(model.to(device), cfg.strategy, cfg.segment_attention, procs.world, device,
                                cfg.precision, cfg.attention_kernel)
    params = [p for p in model.parameters() if p.requires_grad]  # after wrapping: FSDP's sharded parameters
    opt = build_optimizer(cfg, params, sharded=placement.is_sharded(step_model))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.lr_schedule, cfg.warmup_steps, cfg.steps,
                                                             cfg.min_lr_ratio))
    return TrainRun(cfg, procs, store, device, model, tok, step_model, params, opt, sched, data, encoder_decoder)


def resume(run: TrainRun, *, file: object, log) -> int:
    """The step to start from: the latest checkpoint's (its weights, optimizer, scheduler and RNGs restored), or 0."""
    cfg, rank, start = run.cfg, run.procs.rank, 0
    ckpt = run.store.latest() if cfg.resume else None
    if ckpt is not None:
        start = run.store.restore(ckpt, run.step_model if run.sharded else run.model, run.opt, run.sched, rank,
                                  file=file, log=log if rank == 0 else lambda m: None, sharded=run.sharded)
        if rank == 0:
            log(f"[train] resuming from {ckpt.name} (step {start} of {cfg.steps})")
    if rank == 0:  # also with no checkpoint yet: a run killed before its first one logged steps this run repeats
        trim_metrics(run.store.out / "metrics.jsonl", start)
    run.model.train()
    return start


def loop(run: TrainRun, start: int, *, progress: bool, log) -> dict:
    """Steps start..steps: a step, its logging window, its checkpoint. Returns the loss and token figures."""
    cfg, procs = run.cfg, run.procs
    window, tokens_seen, last_loss = LossWindow(start), 0, float("nan")
    with MetricsSink(run.store.out, enabled=procs.rank == 0, tensorboard=cfg.tensorboard, progress=progress,
                     total=cfg.steps, start=start, log=log, wandb_project=cfg.wandb_project if cfg.wandb else None,
                     config=cfg.model_dump(mode="json")) as metrics:
        for step in range(start, cfg.steps):
            run.opt.zero_grad(set_to_none=True)
            loss, targets, tokens = train_step(run.step_model, run.data.step_rows(step), cfg, run.encoder_decoder,
                                               run.tok.pad_id, procs.rank, procs.world, run.device)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
            lr = run.opt.param_groups[0]["lr"]  # the rate this step used (the scheduler moves on below)
            run.opt.step()
            run.sched.step()
            tokens_seen += tokens
            loss, window_tokens = window.add(loss, targets, tokens, procs.dist, run.device)
            last_loss, done = loss / targets, step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                mean, seconds = window.close(done)
                metrics.record(done, mean, lr, window_tokens, seconds)
            metrics.advance(done)
            release_freed()  # the step's activations are gone: their heap pages go back (FLANLAB_MALLOC=trim)
            if done % cfg.save_every == 0 or done == cfg.steps:
                save_checkpoint(run, done)
    return {"final_loss": window.logged[0], "final_loss_steps": window.logged[1], "last_step_loss": last_loss,
            "train_tokens_this_run": tokens_seen}  # non-pad tokens this process consumed in this invocation


class LossWindow:
    """The steps since the last logged line: their summed target-token loss, targets and tokens (over all ranks)."""

    def __init__(self, start: int):
        self.logged = (float("nan"), 0)  # (mean loss, steps) of the last logged window
        self._open(start)

    def _open(self, step: int) -> None:
        self.loss, self.targets, self.tokens, self.t, self.first = 0.0, 0, 0, time.time(), step

    def add(self, loss: float, targets: int, tokens: int, dist, device) -> tuple[float, float]:
        """One step; returns its loss summed over ranks and the window's tokens over ranks."""
        self.tokens += tokens
        window_tokens = self.tokens
        if dist is not None:  # the step's loss and the window's tokens over all ranks
            both = torch.tensor([loss, float(self.tokens)], device=device)  # NCCL reduces GPU tensors
            dist.all_reduce(both)
            loss, window_tokens = both[0].item(), both[1].item()
        self.loss += loss
        self.targets += targets
        return loss, window_tokens

    def close(self, done: int) -> tuple[float, float]:
        """(mean loss, seconds) of the window for the log line, then a new window; the mean is kept as `logged`."""
        mean, seconds = self.loss / self.targets, time.time() - self.t
        self.logged = (mean, done - self.first)
        self._open(done)
        return mean, seconds


def save_checkpoint(run: TrainRun, done: int) -> None:
    procs = run.procs
    rngs = procs.gather(rng_state())  # every rank's, index = rank
    if run.sharded:
        run.store.save_sharded(done, run.step_model, run.tok, run.opt, run.sched, rngs, procs.rank, procs.dist)
    elif procs.rank == 0:
        run.store.save(done, run.model, run.tok, run.opt, run.sched, rngs)
    if procs.dist is not None:
        procs.dist.barrier()


def publish(run: TrainRun, summary: dict) -> None:
    """final/: one HF checkpoint (FSDP's shards gathered first), written by rank 0."""
    rank = run.procs.rank
    from .export import model_card
    try:
        manifest = json.loads((Path(run.cfg.mixture) / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = None
    card = model_card(run.cfg, {**summary, "code": code_version()}, manifest)
    if placement.is_sharded(run.step_model):
        weights = full_state_dict(run.step_model)
        if rank == 0:
            run.store.publish_final(build_model(run.cfg.model, seed=run.cfg.seed)[0], run.tok, summary,
                                    state_dict=weights, card=card)
    elif rank == 0:
        run.store.publish_final(run.model, run.tok, summary, card=card)
    if run.procs.dist is not None:
        run.procs.dist.barrier()
