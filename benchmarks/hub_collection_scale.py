"""How the streamed Flan 2022 collection scales: a 20,000-example mixture at the paper's rates from 1M, 3M and 10M
rows of synthetic parquet in the exact schema of the Hub's export (DataProvenanceInitiative/*_submix_original:
inputs, targets, task_source, task_name, template_type), with the real task names of Flan's task list, realistic
text lengths (inputs ~1.4 KB, targets ~0.2 KB on average; flan2021's card: 8.99 GB / 5.36M rows = 1.68 KB a row) and
rows shuffled over row groups of 10,000. Each mixture is built by `flanlab mix` in a fresh process (13-gram
decontamination on, as examples/flan2022.yaml); reported: wall time, rows scanned per second and peak RSS.

    python benchmarks/hub_collection_scale.py --data /tmp/flan_scale       # makes the data once (~9 GB), then runs
Writes benchmarks/results/hub_collection_scale.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1_000_000  # rows per chunk; a size of k million rows uses chunks 0..k-1
SUBMIX_SHARE = {"flan2021": 0.55, "t0": 0.20, "niv2": 0.18, "cot": 0.04, "dialog": 0.03}
LIST_SOURCES = {"flan2021": ("FLAN", "FLAN/T0", "Program Synthesis"), "t0": ("T0",), "niv2": ("NIv2",),
                "cot": ("CoT",), "dialog": ("Dialog",)}
TEMPLATE_TYPES = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")
ROW_GROUP = 10_000
RATES = {"flan2021": ("muffin", "muffin"), "t0": ("t0sf", "t0sf"), "niv2": ("niv2", "niv2"), "cot": ("cot", "cot"),
         "dialog": ("dialog", "dialog")}


def task_names() -> dict[str, list[str]]:
    from flanlab.mixture.mix import SHIPPED_TASK_LIST
    out: dict[str, dict[str, None]] = {k: {} for k in LIST_SOURCES}
    with open(SHIPPED_TASK_LIST, newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f))[1:]:
            for sub, sources in LIST_SOURCES.items():
                if row[0] in sources:  # NIV2 and T0 tasks are rows (column 3), the others datasets (column 2)
                    out[sub][row[2] if sub in ("niv2", "t0") else row[1]] = None
    return {k: list(v) for k, v in out.items()}


def make_chunk(path: Path, sub: str, names: list[str], rows: int, seed: int, words: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.2, len(names)) + 0.05  # task sizes as skewed as the real collection's
    weights /= weights.sum()
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([(c, pa.string()) for c in
                                          ("inputs", "targets", "task_source", "task_name", "template_type")])) as w:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            tasks = rng.choice(len(names), n, p=weights)
            in_len = np.clip(rng.lognormal(6.9, 0.8, n), 20, 20000).astype(int) // 6  # words (~6 bytes each)
            out_len = np.clip(rng.lognormal(3.8, 1.0, n), 1, 4000).astype(int) // 6 + 1
            offs = rng.integers(0, len(words) - 5000, 2 * n)
            inputs = [" ".join(words[o:o + k]) for o, k in zip(offs[:n], in_len)]
            targets = [" ".join(words[o:o + k]) for o, k in zip(offs[n:], out_len)]
            w.write_table(pa.table({"inputs": inputs, "targets": targets, "task_source": [sub] * n,
                                    "task_name": [names[t] for t in tasks],
                                    "template_type": [TEMPLATE_TYPES[t % 4] for t in rng.integers(0, 4, n)]}),
                          row_group_size=ROW_GROUP)
    os.replace(tmp, path)


def make_data(root: Path, millions: int) -> None:
    names = task_names()
    rng = np.random.default_rng(0)
    vocab = np.array(["".join(rng.choice(list("etaoinshrdlucmfwypvbgk"), rng.integers(2, 9))) for _ in range(20000)])
    words = vocab[rng.zipf(1.3, 3_000_000) % len(vocab)]
    for c in range(millions):
        for sub, share in SUBMIX_SHARE.items():
            f = root / "chunks" / f"{c:02d}" / f"{sub}.parquet"
            if not f.is_file():
                f.parent.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                make_chunk(f, sub, names[sub], int(CHUNK * share), 1000 * c + len(sub), words)
                print(f"made {f} in {time.time() - t0:.1f} s", flush=True)


def size_dir(root: Path, millions: int) -> Path:
    d = root / f"rows_{millions}M"
    for sub in SUBMIX_SHARE:
        (d / sub).mkdir(parents=True, exist_ok=True)
        for c in range(millions):
            link = d / sub / f"train-{c:05d}.parquet"
            if not link.exists():
                os.symlink(root / "chunks" / f"{c:02d}" / f"{sub}.parquet", link)
    return d


def mix_config(root: Path, millions: int) -> Path:
    import yaml
    d = size_dir(root, millions)
    tasks = {"tasks": [{"dataset": sub, "category": cat, "collection": coll,
                        "source": {"type": "flan_collection", "path": str(d / sub)}}
                       for sub, (cat, coll) in RATES.items()]}
    (root / f"tasks_{millions}M.yaml").write_text(yaml.safe_dump(tasks))
    cfg = {"mix": {"seed": 0, "total_examples": 20000, "output": str(root / f"mix_{millions}M"), "overwrite": True,
                   "flan_task_list": "@flan2022", "registry": {"task_files": [str(root / f"tasks_{millions}M.yaml")]},
                   "collections": [{"name": coll, "flan_submixture": coll, "tasks": [f"@{coll}"]}
                                   for _, coll in RATES.values()],
                   "decontamination": {"benchmarks": [{"name": n} for n in ("mmlu", "bbh", "mgsm", "gsm8k",
                                                                                 "tydiqa")]}}}
    f = root / f"mix_{millions}M.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def child(config: str) -> None:
    """One mixture in this process; prints its time, rows and peak RSS as one JSON line."""
    import resource
    from flanlab.config import read_section, validate
    from flanlab.mixture import MixConfig, build_mixture
    data, sec = read_section(config, "mix")
    cfg = validate(MixConfig, data, file=config, prefix=sec)
    t0 = time.time()
    man = build_mixture(cfg, file=config, progress=False, base=Path(config).parent).manifest
    wall = time.time() - t0
    rows = sum(c["rows"] for c in man["data"]["collections"].values())
    print(json.dumps({"seconds": round(wall, 1), "rows": rows, "rows_per_second": round(rows / wall),
                      "examples": man["examples"], "peak_rss_gb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                      "row_groups_read": sum(c["row_groups_read"] for c in man["data"]["collections"].values()),
                      "row_groups": sum(c["row_groups_scanned"] for c in man["data"]["collections"].values())}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/flan_scale"))
    ap.add_argument("--sizes", default="1,3,10")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child")
    ap.add_argument("--summarize", action="store_true", help="recompute the summary of the committed json")
    a = ap.parse_args()
    if a.child:
        return child(a.child)
    if a.summarize:
        out = ROOT / "benchmarks" / "results" / "hub_collection_scale.json"
        res = json.loads(out.read_text())
        res["marginal"] = marginal(res["sizes"])
        out.write_text(json.dumps(res, indent=1) + "\n")
        return print(json.dumps(res["marginal"]))
    sizes = [int(s) for s in a.sizes.split(",")]
    make_data(a.data, max(sizes))
    runs: dict[int, list[dict]] = {s: [] for s in sizes}
    for r in range(a.repeats):  # interleaved: every size once per repeat
        for s in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(mix_config(a.data, s))], check=True,
                                 capture_output=True, text=True, env={**os.environ, "FLANLAB_DATA": os.environ.get(
                                     "FLANLAB_DATA", "")} if os.environ.get("FLANLAB_DATA") else None)
            runs[s].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(s, "M rows, repeat", r, runs[s][-1], flush=True)
    from flanlab.utils import code_version
    res = {"command": "python benchmarks/hub_collection_scale.py " + " ".join(sys.argv[1:]), "code": code_version(),
           "machine": f"{os.cpu_count()} cores", "row_group": ROW_GROUP, "submix_share": SUBMIX_SHARE,
           "sizes": {f"{s}M": {"runs": runs[s], "median_seconds": float(np.median([x["seconds"] for x in runs[s]])),
                               "median_rows_per_second": float(np.median([x["rows_per_second"] for x in runs[s]])),
                               "max_peak_rss_gb": max(x["peak_rss_gb"] for x in runs[s])} for s in sizes}}
    res["marginal"] = marginal(res["sizes"])
    out = ROOT / "benchmarks" / "results" / "hub_collection_scale.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["sizes"], indent=1), json.dumps(res["marginal"]))


def marginal(sizes: dict) -> dict | None:
    """Seconds per million rows between the smallest and the largest size (the fixed part - imports, the
    decontamination index, rendering and writing 20,000 records - cancels out), and that fixed part."""
    keys = sorted(sizes, key=lambda k: int(k[:-1]))
    if len(keys) < 2:
        return None
    (m0, k0), (m1, k1) = [(int(k[:-1]), k) for k in (keys[0], keys[-1])]
    slope = (sizes[k1]["median_seconds"] - sizes[k0]["median_seconds"]) / (m1 - m0)
    return {"seconds_per_million_rows": round(slope, 2), "rows_per_second": round(1e6 / slope),
            "fixed_seconds": round(sizes[k0]["median_seconds"] - slope * m0, 1), "between": [k0, k1]}


if __name__ == "__main__":
    main()
