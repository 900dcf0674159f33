"""The vocabulary between the evaluation's parts (as lm-eval's Instance): what a benchmark asks of a model
(GenRequest; log-likelihood requests are (context, [continuations]) pairs) and the unit of model work a plan is
made of (Unit), which data-parallel evaluation deals out to processes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class GenRequest:
    prompt: str  # the whole context the model continues
    n: int = 1
    temperature: float = 0.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens whose probabilities sum to top_p (last: the
    # fields before it keep their positions)


def cache_payload(r: GenRequest) -> dict:
    """A request as its cache key sees it; top_p appears only when set, so caches from before it existed still hit."""
    d = asdict(r)
    if d["top_p"] == 1.0:
        del d["top_p"]
    return d


@dataclass
class Unit:
    """One batch of model work. `compute` runs in one process and returns a partial result; `finish` runs in
    every process, in plan order, and turns it into the requests it completes, [(request index, answer)]."""
    compute: Callable[[], object]
    finish: Callable[[object], list[tuple[int, object]]] = lambda part: part
