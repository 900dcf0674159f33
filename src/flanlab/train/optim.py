"""Optimizers: Adafactor (the paper's; transformers' implementation), AdamW, plain SGD - and Adafactor for
parameters sharded by FSDP.

transformers' Adafactor keeps plain-tensor state and torch's own fails on sharded tensors (DTensor), so under
FSDP `ShardedAdafactor` runs the same update on each rank's rows: FSDP shards dim 0, so a row statistic is local,
and what spans rows (the column second moments, the mean of the row moments, the update's RMS) is summed over
ranks - two all-reduces per step for all parameters together. Its state is held as DTensors laid out like the
parameters, so torch.distributed.checkpoint can reshard it onto another number of processes.
"""
from __future__ import annotations

import math

import torch
from transformers.optimization import Adafactor

from .strategy import local_shard


def build_optimizer(cfg, params: list, sharded: bool = False):
    """`cfg`: a TrainConfig (optimizer, lr, weight_decay). `sharded`: the parameters are FSDP DTensors."""
    if cfg.optimizer == "adafactor":
        cls = ShardedAdafactor if sharded else Adafactor
        return cls(params, lr=cfg.lr, relative_step=False, scale_parameter=False, warmup_init=False,
                   weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, warmup: int, total: int, min_ratio: float = 0.0):
    """The multiplier of the base learning rate at scheduler step s (0-based): a linear warm-up over `warmup` steps
    ((s + 1) / warmup), then constant, or decayed from 1 at the end of warm-up to `min_ratio` at step `total`."""
    def factor(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        shape = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_ratio + (1.0 - min_ratio) * shape
    return factor


def _like(local: torch.Tensor, param, shape: tuple[int, ...], sharded: bool):
    """A DTensor on `param`'s mesh: sharded on dim 0 like the parameter, or replicated."""
    from torch.distributed.tensor import DTensor, Replicate, Shard
    placements = [Shard(0)] if sharded else [Replicate()]
    stride = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
    return DTensor.from_local(local, param.device_mesh, placements, shape=torch.Size(shape), stride=stride,
                              run_check=False)


def _all_reduce(t: torch.Tensor, param) -> torch.Tensor:
    import torch.distributed as dist
    dist.all_reduce(t, group=param.device_mesh.get_group())
    return t


class ShardedAdafactor(Adafactor):
    """transformers.Adafactor.step for DTensor parameters sharded on dim 0 (beta1=None; 1-D and 2-D parameters)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        work = self._work()
        if not work:
            return loss
        mesh_param = work[0][1]
        summed = self._second_moments(work, mesh_param)
        updates = self._updates(work, summed)
        sumsq = _all_reduce(torch.cat([u.pow(2).sum().reshape(1) for u in updates]), mesh_param)
        self._apply(work, updates, sumsq)
        return loss

    def _work(self) -> list[tuple]:
        """(group, param, local grad, state, factored, beta2t) of every parameter with a gradient; state created and
        its step counted."""
        work = []
        for group in self.param_groups:
            if group["relative_step"] or group["scale_parameter"] or group["beta1"] is not None:
                raise ValueError("ShardedAdafactor implements relative_step=False, scale_parameter=False, beta1=None "
                                 "(flanlab's Adafactor settings)")
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dim() > 2:
                    raise ValueError(f"ShardedAdafactor handles 1-D and 2-D parameters, not shape {tuple(p.shape)}")
                state, g = self.state[p], local_shard(p.grad).float()
                factored = p.dim() == 2
                if not state:
                    state["step"], state["RMS"] = 0, 0
                    if factored:
                        state["exp_avg_sq_row"] = _like(g.new_zeros(g.shape[0]), p, (p.shape[0],), True)
                        state["exp_avg_sq_col"] = _like(g.new_zeros(p.shape[1]), p, (p.shape[1],), False)
                    else:
                        state["exp_avg_sq"] = _like(torch.zeros_like(g), p, tuple(p.shape), True)
                state["step"] += 1
                work.append((group, p, g, state, factored, 1.0 - math.pow(state["step"], group["decay_rate"])))
        return work

    @staticmethod
    def _second_moments(work: list[tuple], mesh_param) -> torch.Tensor | None:
        """Row moments (and unfactored moments) updated on this rank's rows; returns what spans rows, summed over
        ranks: per factored parameter, its column sums of grad^2 and the sum of its new row moments."""
        parts = []
        for group, p, g, state, factored, beta2t in work:
            sq = g * g + group["eps"][0]
            if factored:
                row = local_shard(state["exp_avg_sq_row"])
                row.mul_(beta2t).add_(sq.mean(dim=-1), alpha=1.0 - beta2t)
                parts += [sq.sum(dim=0), row.sum().reshape(1)]
            else:
                local_shard(state["exp_avg_sq"]).mul_(beta2t).add_(sq, alpha=1.0 - beta2t)
        return _all_reduce(torch.cat(parts), mesh_param) if parts else None

    @staticmethod
    def _updates(work: list[tuple], summed: torch.Tensor | None) -> list[torch.Tensor]:
        """The unclipped updates of this rank's rows (column moments updated from the summed column sums)."""
        updates, at = [], 0
        for group, p, g, state, factored, beta2t in work:
            if factored:
                n, m = p.shape
                col_sum, row_total = summed[at:at + m], summed[at + m]
                at += m + 1
                col = local_shard(state["exp_avg_sq_col"])
                col.mul_(beta2t).add_(col_sum / n, alpha=1.0 - beta2t)
                row = local_shard(state["exp_avg_sq_row"])
                r = (row / (row_total / n)).rsqrt_().unsqueeze(-1)
                updates.append(r * col.unsqueeze(-2).rsqrt() * g)
            else:
                updates.append(local_shard(state["exp_avg_sq"]).rsqrt() * g)
        return updates

    @staticmethod
    def _apply(work: list[tuple], updates: list[torch.Tensor], sumsq: torch.Tensor) -> None:
        """Clip each update by its RMS over the whole parameter, then apply it to this rank's rows."""
        for (group, p, g, state, factored, beta2t), u, ss in zip(work, updates, sumsq):
            rms = (ss.sqrt() / math.sqrt(p.numel())).item()
            u.div_(max(rms / group["clip_threshold"], 1.0)).mul_(group["lr"])
            local = local_shard(p)
            if group["weight_decay"] != 0:
                local.add_(local, alpha=-group["weight_decay"] * group["lr"])
            local.add_(-u.to(local.dtype))
