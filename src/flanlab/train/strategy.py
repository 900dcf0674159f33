"""How the model is spread over processes and devices.

- ddp: every process holds the whole model and optimizer (torch DistributedDataParallel when there are several);
- fsdp: torch's fully_shard (FSDP2): parameters, gradients and optimizer state sharded on dim 0 across processes,
  one unit per transformer block (the model's `_no_split_modules`: T5Block, LlamaDecoderLayer, ...) plus the root
  (embeddings, final norm, LM head), gathered around each unit's forward and backward and freed after.

Both wrap `PackedForward`, so the packed loss (per-segment attention, loss on targets only) runs inside the
wrapper's forward and its hooks; LoRA models shard the same blocks (frozen and trainable weights together).
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from ..models.build import base_model
from ..models.packed import PackedForward


def shard_units(model) -> list[torch.nn.Module]:
    """The modules FSDP shards as units, innermost first. T5's relative position bias table is a unit of its own:
    the per-segment path reads it outside the block that owns it (once per stack, for the longest segment)."""
    base = base_model(model)
    names = set(getattr(base, "_no_split_modules", None) or [])
    bias_tables = [m.relative_attention_bias for m in base.modules()
                   if isinstance(getattr(m, "relative_attention_bias", None), torch.nn.Module)]
    return bias_tables + [m for m in base.modules() if type(m).__name__ in names]


def wrap(model, strategy: str, segment_attention: bool, world: int, device: torch.device, precision: str = "fp32",
         kernel: str = "auto"):
    """The module training steps call: `PackedForward(model)` replicated (DDP), sharded (FSDP), or bare (one
    process). `model` keeps pointing at the (possibly sharded) HF model. FSDP with bf16 gathers each unit's
    weights as bfloat16 (what autocast would cast them to anyway: half the all-gather bytes and memory) and
    reduces gradients in fp32; the shards - the master weights - stay fp32."""
    packed = PackedForward(model, segment_attention, kernel)
    if world == 1:
        return packed
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(packed, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    # T5Block returns its position bias as a slice (a view); flanlab changes no block output in place, and
    # tests/test_fsdp.py checks the sharded gradients against one process
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (world,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if precision == "bf16" else \
        MixedPrecisionPolicy()
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=mp)
    fully_shard(packed, mesh=mesh, mp_policy=mp)
    return packed


def is_sharded(step_model) -> bool:
    return hasattr(step_model, "set_requires_gradient_sync")


def grad_sync(step_model, last_micro_batch: bool):
    """Reduce gradients across processes only after the last micro-batch of a step (DDP: no_sync; FSDP: the
    reduce-scatter is skipped and gradients accumulate unsharded until then)."""
    if is_sharded(step_model):
        step_model.set_requires_gradient_sync(last_micro_batch)
        return contextlib.nullcontext()
    if hasattr(step_model, "no_sync") and not last_micro_batch:
        return step_model.no_sync()
    return contextlib.nullcontext()


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded tensor (DTensor); a plain tensor is all local."""
    return t.to_local() if hasattr(t, "to_local") else t


def resident_bytes(tensors) -> int:
    """Bytes this process holds for `tensors` (a DTensor counts its local shard only)."""
    return sum(local_shard(t).numel() * local_shard(t).element_size() for t in tensors)


def optimizer_tensors(opt) -> list[torch.Tensor]:
    return [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


