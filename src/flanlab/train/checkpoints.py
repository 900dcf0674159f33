"""Checkpoints of a training run: atomic directories holding the trainer state (step, scheduler, every rank's RNG
state, config fingerprint) and the model and optimizer - as HF-format weights (config, safetensors, tokenizer,
LoRA adapter) plus the optimizer state as safetensors + JSON, never a pickle (train/safe_state.py; strategy ddp:
one process writes the full state), or as torch.distributed.checkpoint shards under sharded/ (strategy fsdp: every rank writes its own shard, and a run on
another number of processes reshards them on load). The newest ones kept, the latest named in `latest`; the final
model published as final/ in HF format (consolidated from the shards under fsdp)."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import FlanlabError
from ..models.build import save_pretrained
from ..utils import atomic_write_text, publish_dir, recover_dir, writing
from .safe_state import has_state, load_state, save_state


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    def __init__(self, out: Path, keep: int, fingerprint: str):
        self.out, self.keep, self.fingerprint = out, keep, fingerprint

    def remove_stale(self) -> None:
        """Half-written checkpoints of a killed run (.tmp-*); a directory whose publish was killed midway restored."""
        for stale in self.out.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for old in self.out.glob(".*.old-*"):
            recover_dir(self.out / old.name[1:].rsplit(".old-", 1)[0])

    def save(self, step: int, model, tok, opt, sched, rng_states: list[dict]) -> Path:
        """Rank 0 writes; `rng_states` holds every rank's RNG state (index = rank)."""
        final = self.out / f"checkpoint-{step}"
        tmp = self.out / f".tmp-checkpoint-{step}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with writing(tmp):
                if hasattr(model, "peft_config"):
                    model.save_pretrained(str(tmp / "adapter"))
                save_pretrained(model, tok, tmp)
            save_state({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "rng": rng_states, "fingerprint": self.fingerprint}, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk: the half-written copy goes, the last one stays
            raise
        publish_dir(tmp, final)
        atomic_write_text(self.out / "latest", final.name)
        self._prune()
        return final

    def save_sharded(self, step: int, step_model, tok, opt, sched, rng_states: list[dict], rank: int, dist) -> Path:
        """Collective (every rank calls it): each rank writes its shards of the model and optimizer state into a
        shared temporary directory, rank 0 the trainer state; the directory is published once all are written."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict
        final = self.out / f"checkpoint-{step}"
        tmp = self.out / f".tmp-checkpoint-{step}"  # one name all ranks agree on; a killed run's is removed at start
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if dist is not None:
            dist.barrier()
        model_sd, optim_sd = get_state_dict(step_model, opt)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / "sharded"))  # fsyncs each file
        if rank == 0:
            tok.save(tmp)
            save_state({"step": step, "scheduler": sched.state_dict(), "rng": rng_states,
                        "fingerprint": self.fingerprint, "world_size": len(rng_states), "format": "sharded"}, tmp)
            publish_dir(tmp, final)
            atomic_write_text(self.out / "latest", final.name)
            self._prune()
        if dist is not None:
            dist.barrier()
        return final

    def _prune(self) -> None:
        ckpts = sorted((p for p in self.out.glob("checkpoint-*") if p.is_dir()),
                       key=lambda p: int(p.name.split("-")[1]))
        for old in ckpts[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        f = self.out / "latest"
        if f.is_file():
            p = self.out / f.read_text().strip()
            if has_state(p) or (p / "trainer_state.pt").is_file():  # an old pickle: restore() says why it is refused
                return p
        return None

    def restore(self, ckpt: Path, model, opt, sched, rank: int, *, file: object, log=lambda message: None,
                sharded: bool = False) -> int:
        """Load weights, optimizer, scheduler and this rank's RNG state; returns the step to continue from.
        `sharded` (strategy fsdp): `model` is the module the steps call and the checkpoint is read from sharded/
        (collective; resharded when it was written by another number of processes)."""
        state = load_state(ckpt)
        if state["fingerprint"] != self.fingerprint:
            raise FlanlabError(f"{ckpt} was written by a different training config; use another output or "
                               "resume: false", file=file, field="output")
        written_sharded = state.get("format") == "sharded"
        if written_sharded != sharded:
            raise FlanlabError(f"{ckpt} was written with strategy {'fsdp' if written_sharded else 'ddp'} (the formats "
                               "differ); resume it with that strategy, or use another output", file=file,
                               field="strategy")
        if sharded:
            load_sharded(model, opt, ckpt / "sharded")
        else:
            for note in load_weights(model, ckpt):
                log(f"[train] {note}")
            opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one dict: written by one process
        set_rng_state(rngs[rank % len(rngs)])
        return state["step"]

    def publish_final(self, model, tok, summary: dict, state_dict: dict | None = None, card: str | None = None) -> None:
        """final/: the merged model (fp32), a LoRA run's PEFT adapter under adapter/ (the exact result), the model
        card. `state_dict`: the full weights gathered from shards, loaded into `model` (an unsharded copy) first."""
        tmp = self.out / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        save_pretrained(model, tok, tmp)
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(tmp / "adapter"))
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        publish_dir(tmp, self.out / "final")
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1))

    def finished_summary(self, fingerprint: str, steps: int) -> dict | None:
        """The summary of this exact training if it already finished (the stage cache)."""
        path = self.out / "summary.json"
        if (self.out / "final" / "config.json").is_file() and path.is_file():
            summary = json.loads(path.read_text())
            if summary.get("fingerprint") == fingerprint and summary.get("steps") == steps:
                return summary
        return None


def load_weights(model, ckpt: Path) -> list[str]:
    """Load a checkpoint's weights into `model`; returns notes worth logging (an LM head the checkpoint lacks)."""
    from safetensors.torch import load_file
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
        return []
    missing, unexpected = model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
    bad = [k for k in missing if "embed_tokens" not in k and "lm_head" not in k]
    if bad or unexpected:
        raise FlanlabError(f"checkpoint does not match the model: missing {bad[:3]}, unexpected {unexpected[:3]}",
                           file=ckpt)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head is not None and embed is not None and head.weight is embed.weight  # saved once, as the embedding
    if any("lm_head" in k for k in missing) and not tied:
        return [f"{ckpt} has no lm_head weights and the model does not tie them to the embedding: "
                "the LM head keeps its initial values"]
    return []


def load_sharded(step_model, opt, path: Path) -> None:
    """Collective: read model and optimizer state from torch.distributed.checkpoint shards into `step_model` (the
    module the steps call: sharded or not) and `opt`; DCP reshards across process counts."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_sd, optim_sd = get_state_dict(step_model, opt)  # the layout to read into (initialises optimizer state)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(step_model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def full_state_dict(step_model) -> dict:
    """Collective: the whole model's weights gathered from the shards, on the CPU of rank 0 (empty elsewhere),
    keyed as in the HF model (without PackedForward's `model.` prefix)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    sd = get_model_state_dict(step_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("model."): v for k, v in sd.items()}
