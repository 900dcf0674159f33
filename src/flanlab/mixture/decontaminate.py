"""N-gram decontamination of training data against real benchmark files (the GPT-3 / Flan procedure).

Text is lower-cased and split into words (runs of letters and digits; punctuation and white space separate
them). Every n-gram (n = 13 by default) of every benchmark item's own content (EvalItem.text: question,
options, passage - not its few-shot exemplars) is indexed; a benchmark item shorter than n words but at least
`min_words` long is indexed whole, as GPT-3 did for short items. A training record (its full rendered input and
target) is contaminated if any of its n-grams, or any whole short item, occurs in the index.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel
from ..errors import FlanlabError

_WORD = re.compile(r"\w+")


class BenchmarkFiles(StrictModel):
    name: Literal["mmlu", "bbh", "mgsm", "gsm8k", "tydiqa"]
    path: str | None = None  # unset: FLANLAB_DATA's copy, else the Hub's (flanlab.data.resolve)
    source: Literal["auto", "local", "hub"] = "auto"


class DecontaminationSpec(StrictModel):
    ngram: int = Field(13, ge=4)
    min_words: int = Field(8, ge=1)  # shorter benchmark items are not indexed (too generic to mean a leak)
    benchmarks: list[BenchmarkFiles] = Field(default_factory=list)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class NgramIndex:
    """n-gram -> the benchmark it came from. Grams are hashed word-id tuples (within one process)."""

    def __init__(self, n: int = 13, min_words: int = 8):
        self.n, self.min_words = n, min_words
        self.grams: dict[int, str] = {}
        self.lengths: set[int] = set()  # gram lengths present (n, and those of whole short items)
        self.items: dict[str, int] = {}
        self.sources: dict[str, dict] = {}  # benchmark -> where its files came from

    def add(self, benchmark: str, text: str) -> None:
        w = words(text)
        self.items[benchmark] = self.items.get(benchmark, 0) + 1
        if len(w) < self.min_words:
            return
        k = min(self.n, len(w))
        self.lengths.add(k)
        ids = [hash(x) for x in w]
        for i in range(len(ids) - k + 1):
            self.grams.setdefault(hash(tuple(ids[i:i + k])), benchmark)

    def match(self, text: str) -> str | None:
        """The benchmark one of `text`'s n-grams belongs to, or None."""
        if not self.grams:
            return None
        ids = [hash(x) for x in words(text)]
        grams = self.grams
        for k in sorted(self.lengths, reverse=True):
            for i in range(len(ids) - k + 1):
                hit = grams.get(hash(tuple(ids[i:i + k])))
                if hit is not None:
                    return hit
        return None


def build_index(spec: DecontaminationSpec, base: Path | None = None, *, file: object = "<mix config>") -> NgramIndex:
    from ..data.resolve import resolve_benchmark
    from ..evaluate.benchmarks import load_bbh, load_gsm8k, load_mgsm, load_mmlu, load_tydiqa
    loaders = {"mmlu": load_mmlu, "bbh": load_bbh, "mgsm": load_mgsm, "gsm8k": load_gsm8k, "tydiqa": load_tydiqa}
    index = NgramIndex(spec.ngram, spec.min_words)
    for i, b in enumerate(spec.benchmarks):
        try:
            path, index.sources[b.name] = resolve_benchmark(b.name, path=b.path, base=base, source=b.source)
        except FlanlabError as e:
            raise FlanlabError(e.message if e.file is None else f"{e.file}: {e.message}", file=file,
                               field=f"decontamination.benchmarks[{i}].{e.field or 'path'}") from None
        for item in loaders[b.name](path, shots=0).items:
            index.add(b.name, item.text)
    return index
