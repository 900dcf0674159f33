"""Files of a Hugging Face Hub dataset repo, through huggingface_hub's own cache.

Only the files a run needs are fetched (`allow_patterns`); what was read is recorded as repo@commit. With
HF_HUB_OFFLINE=1 a warm cache is read without network; a cold one (or files deleted from it) fails with one line
naming the repo, the missing files and the command that fetches them. huggingface_hub writes a download to
`blobs/*.incomplete` and links it into the snapshot only once complete, so an interrupted download is never read.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FlanlabError


@dataclass(frozen=True)
class Snapshot:
    repo: str
    revision: str
    commit: str
    path: Path

    @property
    def source(self) -> str:
        return f"{self.repo}@{self.commit}"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> str:
    """huggingface_hub's cache as the environment names it now (its own constant is fixed when it is imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def fetch_command(repo: str, revision: str, patterns: list[str], name: str | None = None) -> str:
    include = " ".join(f"'{p}'" for p in patterns[:6]) + (" ..." if len(patterns) > 6 else "")
    hf = f"hf download {repo} --repo-type dataset --revision {revision} --include {include}"
    return f"`flanlab data fetch {name}` (or `{hf}`)" if name else f"`{hf}`"


def _missing(root: Path, required: list[tuple[str, ...]]) -> list[str]:
    """Required files not in the snapshot: each entry is a group of alternative globs (one must match a file)."""
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return [" or ".join(group) for group in required if not any(fnmatch.filter(files, g) for g in group)]


def fetch(repo: str, patterns: list[str], required: list[tuple[str, ...]], *, revision: str = "main",
          name: str | None = None) -> Snapshot:
    """The snapshot of `repo` at `revision` holding the files matching `patterns` (downloaded when missing and
    online); every group of `required` globs must match a file, else one FlanlabError naming what is missing."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of flanlab
        raise FlanlabError("huggingface_hub is not installed (pip install huggingface_hub)", field="hub") from None
    how = fetch_command(repo, revision, patterns, name)
    what = f"{repo}@{revision}"
    try:
        path = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns,
                                      cache_dir=cache_dir(), local_files_only=offline()))
    except Exception as e:  # network, unknown repo or revision, offline with a cold cache
        kind = type(e).__name__
        if offline() or kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            raise FlanlabError(f"{what} is not in the hub cache and HF_HUB_OFFLINE is set; fetch it on a machine "
                               f"with network: {how}", field=name or repo) from None
        if kind == "RepositoryNotFoundError":
            raise FlanlabError(f"no dataset repo {repo} on the Hub (or it is gated/private: `hf auth login`)",
                               field=name or repo) from None
        if kind == "RevisionNotFoundError":
            raise FlanlabError(f"{repo} has no revision '{revision}'", field=name or repo) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else kind
        raise FlanlabError(f"downloading {what} failed ({kind}: {first[:200]}); nothing partial is kept - re-run to "
                           f"resume, or fetch it with {how}", field=name or repo) from None
    missing = _missing(path, required)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        if offline():
            raise FlanlabError(f"{what}: the hub cache lacks {shown} (HF_HUB_OFFLINE is set); fetch with {how}",
                               field=name or repo)
        raise FlanlabError(f"{what} has no file matching {shown} (unknown config or split?)", field=name or repo)
    return Snapshot(repo, revision, path.name, path)


def cached(repo: str, required: list[tuple[str, ...]], *, revision: str = "main") -> Snapshot | None:
    """The cached snapshot holding every required file, or None; never uses the network."""
    try:
        from huggingface_hub import snapshot_download
        path = Path(snapshot_download(repo, repo_type="dataset", revision=revision, cache_dir=cache_dir(),
                                      local_files_only=True))
    except Exception:
        return None
    return None if _missing(path, required) else Snapshot(repo, revision, path.name, path)
