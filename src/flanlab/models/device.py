"""Which device a process computes on, its place among data-parallel processes, and moving batches there (shared by
training and evaluation)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


def select_device(name: str = "auto") -> torch.device:
    """`auto`: this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from ..errors import FlanlabError
        raise FlanlabError("device: cuda asked for, but torch sees no CUDA device", field="device")
    index = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def to_device(batch: dict, device: torch.device) -> dict:
    """Host-to-GPU copies from pinned memory, without blocking the host; a no-op on the CPU."""
    if device.type == "cpu":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


class Processes:
    """This process's place among the processes of a torch.distributed job; one process when no process group is
    initialised."""

    def __init__(self):
        import torch.distributed as dist
        self.dist = dist if dist.is_available() and dist.is_initialized() else None
        self.rank = self.dist.get_rank() if self.dist else 0
        self.world = self.dist.get_world_size() if self.dist else 1

    def gather(self, obj) -> list:
        """Every process's `obj`, by rank (collective)."""
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): without it bf16 autocast is emulated, slower
    than fp32. Linux reads the flags from /proc/cpuinfo; elsewhere oneDNN's own check decides."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def usable_precision(precision: str, device: torch.device, log, stage: str = "train") -> str:
    """The precision to run in: bf16 on a CPU without native bfloat16 falls back to fp32, said once
    (FLANLAB_EMULATED_BF16=1 keeps emulated bf16, e.g. to test its numerics)."""
    if (precision == "bf16" and device.type == "cpu" and os.environ.get("FLANLAB_EMULATED_BF16") != "1"
            and not native_bf16_cpu()):
        log(f"[{stage}] precision bf16 requested, but this CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 "
            f"flag): emulated bf16 is slower than fp32, so it runs in fp32")
        return "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """bf16: matmuls and attention in bfloat16 under autocast; weights (and in training gradients and optimizer
    state) stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fp32_output_head(head: torch.nn.Module | None, device: torch.device):
    """The output head (hidden states -> logits) outside autocast, in its weights' dtype (fp32), while the block is
    open. Why: under bf16 autocast every logit is rounded to bf16's 8-bit mantissa - steps of 0.125 at gemma-3's
    logit scale of 16-32 - so multiple-choice options (and greedy tokens) that fp32 tells apart tie: 287 of 1,140
    MMLU items did in a bf16 evaluation of gemma-3-270m, their answer then set by the options' order. Evaluation
    keeps only a few positions' logits per row, so the head's share of the compute is small. `head` None: nothing."""
    if head is None:
        yield
        return
    own = vars(head).get("forward")  # an instance-level forward (e.g. a hook library's) is put back as it was
    forward = head.forward
    dtype = getattr(head, "weight", torch.empty(0)).dtype

    def fp32_forward(x, *args, **kwargs):
        with torch.autocast(device_type=device.type, enabled=False):
            return forward(x.to(dtype), *args, **kwargs)

    head.forward = fp32_forward
    try:
        yield
    finally:
        if own is None:
            del head.forward
        else:
            head.forward = own
