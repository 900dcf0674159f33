"""The one place a dataset name becomes files plus a record of where they came from, in this order unless the
config says otherwise (`source`): the config's own `path`; the real-data directory (FLANLAB_DATA, or
../shared/data); the Hugging Face Hub (through huggingface_hub's cache, converted once to the upstream layout)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..errors import FlanlabError
from ..utils import resolve_path
from . import hub
from .catalog import BENCHMARKS

Source = Literal["auto", "local", "hub"]
DEFAULT_CACHE = "~/.cache/flanlab/hub"


def resolve_benchmark(name: str, *, path: str | None = None, configs: list[str] | None = None,
                      base: Path | None = None, source: Source = "auto", repo: str | None = None,
                      revision: str | None = None, cache: str = DEFAULT_CACHE) -> tuple[Path, dict]:
    """(a directory in the benchmark's upstream layout, its provenance: {source, path | repo, revision, commit})."""
    if path:
        p = resolve_path(path, base)
        if not p.exists():
            raise FlanlabError("benchmark data not found (a `path` is read as given; leave it out to use "
                               "FLANLAB_DATA or the Hub)", file=p, field="path")
        return p, {"source": "path", "path": str(p)}
    entry = BENCHMARKS.get(name)
    if entry is None:
        raise FlanlabError(f"{name} has no known source: give it a `path`", field="path")
    if source in ("auto", "local"):
        from ..datapaths import data_root
        root = data_root()
        if root is not None and (root / entry.local).exists():
            return root / entry.local, {"source": "FLANLAB_DATA", "path": str(root / entry.local)}
        if source == "local":
            raise FlanlabError(f"no local copy of {name} (FLANLAB_DATA/{entry.local}); set FLANLAB_DATA, give a "
                               "`path`, or use source: hub", field="source")
    chosen = entry.chosen(configs)
    repo = repo or entry.repo
    try:
        snap = hub.fetch(repo, entry.patterns(chosen), entry.required(chosen), revision=revision or entry.revision,
                         name=name)
    except FlanlabError as e:  # the config field that chose the Hub
        raise FlanlabError(e.message, field="source") from None
    dest = Path(cache).expanduser() / repo.replace("/", "--") / snap.commit
    entry.convert(snap.path, chosen, dest)
    return dest, {"source": "hub", "repo": repo, "revision": snap.revision, "commit": snap.commit,
                  "path": str(dest)}


def describe(prov: dict) -> str:
    """One line for logs: where a dataset came from."""
    if prov.get("source") == "hub":
        return f"{prov['repo']}@{prov['commit'][:12]} (Hub, revision {prov['revision']})"
    return f"{prov['path']} ({prov['source']})"
