"""Hugging Face `datasets` source. The hub path is real; offline it works with local
builders (e.g. path='json', data_files=...)."""
from __future__ import annotations

from ...errors import FlanlabError
from ..model import ListSource
from .files import rows_to_examples


class HFSource(ListSource):
    def __init__(self, path: str, mapping: dict[str, str], *, name: str | None = None,
                 split_map: dict[str, str] | None = None, data_files=None, label: str = "hf"):
        try:
            import datasets
        except ImportError:  # pragma: no cover
            raise FlanlabError("the 'datasets' package is not installed", field="source.type") from None
        split_map = split_map or {"train": "train", "validation": "validation", "test": "test"}
        splits = {}
        for ours, theirs in split_map.items():
            try:
                ds = datasets.load_dataset(path, name, split=theirs, data_files=data_files)
            except ValueError as e:  # missing split
                if "split" in str(e).lower() or "Unknown split" in str(e):
                    continue
                raise FlanlabError(f"cannot load dataset: {e}", file=path, field="source.hf_path") from None
            except Exception as e:
                raise FlanlabError(f"cannot load dataset: {e}", file=path, field="source.hf_path") from None
            splits[ours] = rows_to_examples(((i + 1, row) for i, row in enumerate(ds)), mapping,
                                            file=f"{path}[{theirs}]", prefix=f"{label}/{ours}")
        if not splits:
            raise FlanlabError(f"none of the splits {list(split_map.values())} exist", file=path,
                               field="source.split_map")
        super().__init__(splits)
