"""Which device a process computes on, its place among data-parallel processes, and moving batches there (shared by
training and evaluation)."""
from __future__ import annotations

import os

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
