"""Trainer state (optimizer, scheduler, RNG states, step) on disk without pickle: every tensor and numpy array goes
to one safetensors file, the structure around them (dicts, lists, tuples, numbers, strings) to JSON. Loading runs
no code from the file, so a checkpoint from elsewhere cannot run code on this machine (torch.load of a pickle can).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import FlanlabError

FORMAT = "flanlab-state-1"


def _encode(obj, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), tensors)
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):  # keys may be ints (optimizer state) or strings: kept with their type
        return {"__items__": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in trainer state")


def _decode(obj, tensors: dict, where: str):
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise ValueError(f"unexpected value {obj!r}")
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(np.dtype(obj["dtype"]), copy=False)
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        out = {}
        for k, v in obj["__items__"]:
            if not isinstance(k, (int, str)):
                raise ValueError(f"bad key {k!r}")
            out[k] = _decode(v, tensors, where)
        return out
    raise ValueError(f"unknown node {sorted(obj)[:3]}")


def save_state(state: dict, directory: Path, name: str = "trainer_state") -> None:
    """`name`.json + `name`.safetensors in `directory` (written and fsynced; the caller publishes the directory)."""
    from ..utils import writing
    tensors: dict = {}
    tree = _encode(state, tensors)
    with writing(directory / f"{name}.safetensors"):
        save_file(tensors, str(directory / f"{name}.safetensors"))
    with writing(directory / f"{name}.json"), open(directory / f"{name}.json", "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "state": tree}, f)
        f.flush()
        os.fsync(f.fileno())


def has_state(directory: Path, name: str = "trainer_state") -> bool:
    return (directory / f"{name}.json").is_file() and (directory / f"{name}.safetensors").is_file()


def load_state(directory: Path, name: str = "trainer_state") -> dict:
    """The state `save_state` wrote; a missing, truncated or foreign file is refused with its name (FlanlabError)."""
    meta, blob = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not has_state(directory, name):
        pickled = directory / f"{name}.pt"
        why = (f"{pickled.name} is a pickle (written by an older flanlab or elsewhere) and pickles can run code: not "
               "loaded; resume from a checkpoint this flanlab wrote, or start again") if pickled.exists() else \
            f"{meta.name} or {blob.name} is missing"
        raise FlanlabError(f"checkpoint {directory}: {why}", file=directory)
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        tensors = load_file(str(blob))
        return _decode(doc["state"], tensors, str(meta))
    except (ValueError, KeyError, TypeError, OSError, SafetensorError) as e:
        raise FlanlabError(f"checkpoint {directory}: trainer state is corrupt ({type(e).__name__}: "
                           f"{str(e)[:120]})", file=meta) from None
