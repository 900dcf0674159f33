"""Where the real data lives: one setting, `FLANLAB_DATA` (a directory in ../shared/data's layout: mmlu/, bbh/,
mgsm/, gsm8k/, tydiqa/, train/, rtp/), defaulting to ../shared/data beside the checkout or the working directory
when it exists; `FLANLAB_DATA=hub` means none. Without one, benchmarks and the Flan collection come from the Hugging
Face Hub (flanlab.data), and the tests that need these real files skip, saying why."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import FlanlabError

ENV = "FLANLAB_DATA"
_CHECKOUT = Path(__file__).resolve().parents[2]  # src/flanlab -> the checkout


def candidates() -> list[Path]:
    return [Path.cwd().parent / "shared" / "data", _CHECKOUT.parent / "shared" / "data"]


def data_root(required: bool = False) -> Path | None:
    """FLANLAB_DATA if set (it must exist), else the first ../shared/data found; None (or, `required`, an error that
    says how to provide one) when there is none."""
    env = os.environ.get(ENV)
    if env and env.strip().lower() == "hub":  # no local copy: every dataset from the Hugging Face Hub
        if required:
            raise FlanlabError(f"{ENV}=hub: this config names a local data file; give it no path (benchmarks then "
                               "come from the Hub) or point FLANLAB_DATA at a copy", field=ENV)
        return None
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise FlanlabError(f"{ENV} points to a directory that does not exist", file=p, field=ENV)
        return p
    for p in candidates():
        if p.is_dir():
            return p
    if required:
        raise FlanlabError(f"no real data directory: set {ENV} to a copy in ../shared/data's layout (see "
                           "shared/data/README.md), or give benchmarks no `path` to fetch them from the hub when "
                           "online",
                           field=ENV)
    return None
