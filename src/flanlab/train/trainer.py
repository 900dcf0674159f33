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
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from .. import THREADING, configure_threads
from ..config import StrictModel
from ..errors import FlanlabError
from ..outlock import output_lock
from ..models.build import ModelSpec, base_model, build_model, count_params, fuse_gelu, is_encoder_decoder
from ..models.device import Processes, select_device, to_device
from ..models.packed import collate, loss_sum
from . import strategy as placement
from .checkpoints import CheckpointStore, full_state_dict, rng_state
from .data import DataStream
from .metrics import MetricsSink, trim_metrics
from .optim import build_optimizer


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
    optimizer: Literal["adafactor", "adamw", "sgd"] = "adafactor"  # sgd: plain, no momentum (tests, baselines)
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
    # several processes: ddp replicates model and optimizer in each; fsdp shards parameters, gradients and optimizer
    # state across them (torch fully_shard, one unit per transformer block) and writes sharded checkpoints
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # bf16: forward and backward under bfloat16 autocast; weights, gradients and optimizer state stay fp32
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: this process's GPU when CUDA is available


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
    d = cfg.model_dump(exclude={"output", "resume", "tensorboard", "save_every", "keep_checkpoints", "log_every", "threads",
                                "steps", "mixture", "gradient_checkpointing", "strategy", "device"})
    d["mixture"] = _mixture_identity(cfg.mixture)
    for key, default in (("group_by_length", False), ("segment_attention", True), ("fused_gelu", True),
                         ("precision", "fp32")):
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
    if cfg.gradient_checkpointing:
        from ..models.segattn import recompute_context  # recomputed blocks re-enter the per-segment attention
        enable_activation_checkpointing(base_model(model), {"use_reentrant": False, "context_fn": recompute_context})
    return model, tok


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
            with placement.autocast(cfg.precision, device):
                loss, _ = loss_sum(model, batch, cfg.segment_attention)
            (loss * world / total_targets).backward()  # DDP and FSDP average gradients over ranks
        loss_total += loss.item()
        tokens += sum(len(e.inputs) + len(e.targets) for r in shard for e in r)
    return loss_total, total_targets, tokens


def train(cfg: TrainConfig, *, progress: bool = True, file: object = "<train config>",
          log=lambda message: None) -> dict:
    """Run (or resume) training. Returns a summary dict; rank 0 writes checkpoints, metrics.jsonl and final/ (and
    holds the output's lock: a second process on the same output refuses)."""
    with output_lock(cfg.output, enabled=int(os.environ.get("RANK", "0")) == 0):
        return _train(cfg, progress=progress, file=file, log=log)


def _train(cfg: TrainConfig, *, progress: bool, file: object, log) -> dict:
    procs = init_distributed()
    dist, rank, world = procs.dist, procs.rank, procs.world
    threads = configure_threads(cfg.threads)
    if cfg.batch_size % world:
        raise FlanlabError(f"batch_size {cfg.batch_size} is not divisible by {world} processes", file=file,
                           field="batch_size")
    out = Path(cfg.output)
    store = CheckpointStore(out, cfg.keep_checkpoints, config_fingerprint(cfg))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        store.remove_stale()
    done_before = store.finished_summary(store.fingerprint, cfg.steps)
    if done_before is not None:
        return {**done_before, "cached": True}  # stage cache: this exact training already finished

    device = select_device(cfg.device)
    model, tok = build_for_training(cfg)
    encoder_decoder = is_encoder_decoder(model)
    data = DataStream(cfg, tok, encoder_decoder)
    sharded = cfg.strategy == "fsdp"  # sharded checkpoints even in one process, so any process count can resume
    step_model = placement.wrap(model.to(device), cfg.strategy, cfg.segment_attention, world, device,
                                cfg.precision)
    params = [p for p in model.parameters() if p.requires_grad]  # after wrapping: FSDP's sharded parameters
    opt = build_optimizer(cfg, params, sharded=placement.is_sharded(step_model))
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)

    start = 0
    ckpt = store.latest() if cfg.resume else None
    if ckpt is not None:
        start = store.restore(ckpt, step_model if sharded else model, opt, sched, rank, file=file,
                              log=log if rank == 0 else lambda m: None, sharded=sharded)
        if rank == 0:
            log(f"[train] resuming from {ckpt.name} (step {start} of {cfg.steps})")
            trim_metrics(out / "metrics.jsonl", start)
    model.train()

    t0 = time.time()
    tokens_seen, last_loss, logged = 0, float("nan"), (float("nan"), 0, start)
    window = {"tokens": 0, "loss": 0.0, "targets": 0, "t": time.time(), "from": start}
    with MetricsSink(out, enabled=rank == 0, tensorboard=cfg.tensorboard, progress=progress, total=cfg.steps,
                     start=start, log=log) as metrics:
        for step in range(start, cfg.steps):
            opt.zero_grad(set_to_none=True)
            loss, targets, tokens = train_step(step_model, data.step_rows(step), cfg, encoder_decoder, tok.pad_id,
                                               rank, world, device)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            tokens_seen += tokens
            window["tokens"] += tokens
            if dist is not None:  # the step's loss and the window's tokens over all ranks
                both = torch.tensor([loss, float(window["tokens"])], device=device)  # NCCL reduces GPU tensors
                dist.all_reduce(both)
                loss, window_tokens = both[0].item(), both[1].item()
            else:
                window_tokens = window["tokens"]
            last_loss = loss / targets
            window["loss"] += loss
            window["targets"] += targets
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                logged = (window["loss"] / window["targets"], done - window["from"], done)
                metrics.record(done, logged[0], sched.get_last_lr()[0], window_tokens, time.time() - window["t"])
                window = {"tokens": 0, "loss": 0.0, "targets": 0, "t": time.time(), "from": done}
            metrics.advance(done)
            if done % cfg.save_every == 0 or done == cfg.steps:
                rngs = procs.gather(rng_state())  # every rank's, index = rank
                if sharded:
                    store.save_sharded(done, step_model, tok, opt, sched, rngs, rank, dist)
                elif rank == 0:
                    store.save(done, model, tok, opt, sched, rngs)
                if dist is not None:
                    dist.barrier()

    # final_loss is what the last [train] line and metrics.jsonl's last record say: the mean target-token loss over
    # the last logging window (final_loss_steps steps); last_step_loss is the final step's alone
    summary = {"fingerprint": store.fingerprint, "steps": cfg.steps, "final_loss": logged[0],
               "final_loss_steps": logged[1], "last_step_loss": last_loss,
               "params": count_params(model), "world_size": world, "encoder_decoder": encoder_decoder,
               "strategy": cfg.strategy, "precision": cfg.precision, "threads": {**THREADING, "torch": threads},
               "seconds": round(time.time() - t0, 2), "resumed_from": start,
               "train_tokens_this_run": tokens_seen,  # non-pad tokens this process consumed in this invocation
               # what this process holds between steps (a sharded tensor counts its local shard)
               "param_bytes_per_rank": placement.resident_bytes(model.parameters()),
               "optimizer_bytes_per_rank": placement.resident_bytes(placement.optimizer_tensors(opt))}
    if placement.is_sharded(step_model):  # gather the shards into one HF checkpoint, written by rank 0
        weights = full_state_dict(step_model)
        if rank == 0:
            store.publish_final(build_model(cfg.model, seed=cfg.seed)[0], tok, summary, state_dict=weights)
    elif rank == 0:
        store.publish_final(model, tok, summary)
    if dist is not None:
        dist.barrier()
    return summary
