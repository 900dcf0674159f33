"""The task model: a Dataset (a data source) x a TaskCategory (a task setup) = a Task.

Each Task carries several templates. An Example is template-free: named fields plus an
answer, optional answer options and an optional step-by-step rationale (for CoT data).
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

from ..errors import FlanlabError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    id: str
    fields: dict
    answer: str
    options: tuple[str, ...] | None = None
    rationale: str | None = None
    aliases: tuple[str, ...] | None = None  # further acceptable answers (for exact match / F1)

    def text_key(self) -> str:
        """Normalized template-free content, used for decontamination."""
        return " ".join(" ".join(str(self.fields[k]) for k in sorted(self.fields)).lower().split())


def as_sentence(text: str) -> str:
    """Stripped, ending in . ! or ? (a rationale followed by "So the answer is ..." reads as sentences)."""
    t = text.strip()
    return t + "." if t and t[-1] not in ".!?" else t


@dataclass(frozen=True)
class Template:
    input: str
    target: str = "{answer}"

    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.input + self.target) if f}

    @property
    def is_cot(self) -> bool:
        """A CoT template: its target holds the rationale ("{rationale} So the answer is {answer}.")."""
        return "rationale" in {f for _, f, _, _ in string.Formatter().parse(self.target) if f}

    def render(self, example: Example, task_name: str = "?") -> tuple[str, str]:
        values = dict(example.fields)
        values["answer"] = example.answer
        if example.rationale is not None:  # CoT templates write the rationale into their target
            values["rationale"] = as_sentence(example.rationale)
        try:
            return self.input.format_map(values), self.target.format_map(values)
        except KeyError as e:
            raise FlanlabError(
                f"template refers to {{{e.args[0]}}} but example {example.id} has fields {sorted(values)}",
                file=f"task {task_name}", field="templates") from None


class ExampleSource(Protocol):
    def size(self, split: str) -> int: ...
    def get(self, split: str, index: int) -> Example: ...


@dataclass(frozen=True)
class Dataset:
    """A data source: where examples come from."""
    name: str
    source: ExampleSource = field(compare=False, repr=False)
    description: str = ""
    upstream_size: int | None = None  # examples upstream, when only part of the dataset is available here


@dataclass(frozen=True)
class TaskCategory:
    """A task setup: what is asked of the model, with its templates."""
    name: str
    templates: tuple[Template, ...]
    description: str = ""
    answer_type: str = "text"  # text | choice | number


@dataclass
class Task:
    dataset: Dataset
    category: TaskCategory
    collection: str = "synthetic"
    held_out: bool = False
    benchmark_source: bool = False  # a benchmark's data: may never enter training data
    templates: tuple[Template, ...] | None = None  # overrides category templates
    name_override: str | None = None
    # the example fields that are raw content, shown alone by exemplar-only prompts (None: all fields; (): none -
    # rows rendered upstream carry their template in every field, so they cannot be shown without it)
    raw_fields: tuple[str, ...] | None = None
    excluded: str | None = None  # why this task may never enter training data (besides held_out / benchmark_source)

    @property
    def name(self) -> str:
        return self.name_override or f"{self.category.name}:{self.dataset.name}"

    def get_templates(self) -> tuple[Template, ...]:
        return self.templates or self.category.templates

    def size(self, split: str) -> int:
        return self.dataset.source.size(split)

    def get(self, split: str, index: int) -> Example:
        return self.dataset.source.get(split, index)

    def examples(self, split: str, limit: int | None = None) -> Iterator[Example]:
        n = self.size(split)
        if limit is not None:
            n = min(n, limit)
        for i in range(n):
            yield self.get(split, i)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "dataset": self.dataset.name,
            "category": self.category.name,
            "collection": self.collection,
            "held_out": self.held_out,
            "benchmark_source": self.benchmark_source,
            "excluded": self.excluded,
            "answer_type": self.category.answer_type,
            "templates": [{"input": t.input, "target": t.target} for t in self.get_templates()],
            "sizes": {s: self.size(s) for s in SPLITS},
        }


class ListSource:
    """Examples held in memory, split by explicit lists."""

    def __init__(self, splits: dict[str, Sequence[Example]]):
        self.splits = {s: list(splits.get(s, [])) for s in SPLITS}

    def size(self, split: str) -> int:
        return len(self.splits[split])

    def get(self, split: str, index: int) -> Example:
        return self.splits[split][index]


def hash_split(key: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """Deterministic split assignment for sources that ship without splits."""
    import hashlib
    h = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if h < fractions[0]:
        return "train"
    if h < fractions[0] + fractions[1]:
        return "validation"
    return "test"


def content_key(example: Example) -> str:
    """What makes two examples the same item, whatever their ids and templates: normalized fields + answer."""
    return example.text_key() + " => " + " ".join(example.answer.lower().split())


class GeneratedSource:
    """Examples produced on demand by a seeded generator, with splits that never share an item.

    Small item spaces (a word list, the digits) are enumerated once and their items dealt to test (20%),
    validation (10%) and train (the rest, and any item the enumeration missed); large ones are split by a
    hash of the content key (80/10/10). Train example i is a pure function of (seed, split, i): drawn until
    it belongs to train, so mixtures never need the dataset in memory. Validation and test are lists of
    distinct items, at most the requested size (fewer where the space is small)."""

    PROBE = 1000  # draws used to discover a task's item space
    SMALL = 250  # at most this many distinct items in PROBE draws: the space is enumerated
    MAX_TRIES = 1000

    def __init__(self, name: str, gen: Callable, sizes: dict[str, int], seed: int = 0):
        self.name, self.gen, self.sizes, self.seed = name, gen, sizes, seed
        self._small: dict[str, str] | None = None  # content key -> split, for small spaces
        self._eval: dict[str, list[Example]] = {}

    def _draw(self, rng) -> Example:
        return Example(id="", **self.gen(rng))

    def _partition(self) -> dict[str, str]:
        if self._small is None:
            import random
            rng = random.Random(f"{self.seed}/{self.name}/space")
            seen: dict[str, None] = {}
            for _ in range(self.PROBE):
                seen.setdefault(content_key(self._draw(rng)), None)
            if len(seen) > self.SMALL:
                self._small = {}
            else:
                keys = sorted(seen)
                random.Random(f"{self.seed}/{self.name}/deal").shuffle(keys)
                n_test = max(1, round(0.2 * len(keys)))
                n_val = max(1, round(0.1 * len(keys))) if len(keys) >= 3 else 0
                self._small = {k: "test" for k in keys[:n_test]}
                self._small.update({k: "validation" for k in keys[n_test:n_test + n_val]})
                self._small.update({k: "train" for k in keys[n_test + n_val:]})
        return self._small

    def split_of(self, example: Example) -> str:
        key = content_key(example)
        small = self._partition()
        if small:
            return small.get(key, "train")
        return hash_split(key)

    def _eval_list(self, split: str) -> list[Example]:
        if split not in self._eval:
            import random
            rng = random.Random(f"{self.seed}/{self.name}/{split}")
            out, keys = [], set()
            want = self.sizes.get(split, 0)
            for _ in range(want * 50):
                if len(out) == want:
                    break
                ex = self._draw(rng)
                key = content_key(ex)
                if key not in keys and self.split_of(ex) == split:
                    keys.add(key)
                    out.append(ex)
            self._eval[split] = [Example(id=f"{self.name}/{split}/{i}", fields=e.fields, answer=e.answer,
                                         options=e.options, rationale=e.rationale, aliases=e.aliases)
                                 for i, e in enumerate(out)]
        return self._eval[split]

    def size(self, split: str) -> int:
        if split == "train":
            return self.sizes.get(split, 0)
        return len(self._eval_list(split))

    def get(self, split: str, index: int) -> Example:
        import random
        if not 0 <= index < self.size(split):
            raise IndexError(f"{self.name}/{split}: index {index} out of range")
        if split != "train":
            return self._eval_list(split)[index]
        rng = random.Random(f"{self.seed}/{self.name}/{split}/{index}")
        for _ in range(self.MAX_TRIES):
            ex = self._draw(rng)
            if self.split_of(ex) == "train":
                return Example(id=f"{self.name}/{split}/{index}", fields=ex.fields, answer=ex.answer,
                               options=ex.options, rationale=ex.rationale, aliases=ex.aliases)
        raise RuntimeError(f"{self.name}: no train item found in {self.MAX_TRIES} draws")
