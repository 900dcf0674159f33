"""Is the evaluation's RSS climb retained objects or glibc's allocator? The same command under glibc's defaults, with the
mmap threshold pinned (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_: buffers of 128 KiB and more are mmapped and
go back to the system when freed; by default glibc raises the threshold up to 32 MiB after the first large free, and
the freed buffers then stay in its heap), and with flanlab's FLANLAB_MALLOC=trim (malloc_trim after each batch). Variants interleaved, a fresh output each run; peak RSS
and wall time from /usr/bin/time -v, the answers compared. Writes benchmarks/results/allocator_memory.json.

    python benchmarks/memory_probe/allocator.py --repeats 2 -- flanlab eval -c smollm2-135m --tasks mmlu --limit 20 precision=bf16
    python benchmarks/memory_probe/allocator.py --repeats 1 --name main_job -- flanlab run      # per stage from run.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))
from full_eval import time_log  # noqa: E402
from machine import cpu_description  # noqa: E402
from flanlab.utils import code_version  # noqa: E402

VARIANTS = {
    "glibc default": {"FLANLAB_MALLOC": "off"},
    "mmap threshold pinned at 128 KiB": {"FLANLAB_MALLOC": "off", "MALLOC_MMAP_THRESHOLD_": "131072",
                                         "MALLOC_TRIM_THRESHOLD_": "131072"},
    "malloc_trim after each batch / step": {"FLANLAB_MALLOC": "trim"},
}
OUT = ROOT / "benchmarks" / "results" / "allocator_memory.json"


def one(cmd: list[str], env: dict, work: Path) -> dict:
    out, log = work / "out", work / "time.log"
    full = ["/usr/bin/time", "-v", *cmd, "-o", str(out), "--no-progress"]
    with open(log, "w") as err:
        code = subprocess.run(full, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=err).returncode
    if code:
        raise SystemExit(f"{' '.join(full)} failed ({code}); see {log}")
    rec = time_log(log)
    run_json = out / "run.json"
    if run_json.is_file():
        rec["peak_rss_mb_by_stage"] = json.loads(run_json.read_text()).get("peak_rss_mb_by_stage")
    preds = sorted((out / "eval_after" if run_json.is_file() else out).glob("predictions.jsonl"))
    rec["answers"] = [(p["id"], p["mode"], p.get("answer")) for f in preds for p in map(json.loads, f.open())]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--name", default=None)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="a subset of: " + "; ".join(VARIANTS))
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    for r in range(a.repeats):
        order = list(a.variants) if r % 2 == 0 else list(reversed(a.variants))  # interleaved, order alternating
        for v in order:
            with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
                runs[v].append(one(cmd, VARIANTS[v], Path(d)))
            print(v, {k: runs[v][-1][k] for k in ("wall_seconds", "peak_rss_gb")}, flush=True)
    base = runs[a.variants[0]][0]["answers"]
    result = {"name": a.name or " ".join(cmd), "command": cmd, "code": code_version(), "machine": cpu_description(),
              "repeats": a.repeats, "variants": {}}
    for v, rs in runs.items():
        result["variants"][v] = {
            "env": VARIANTS[v], "peak_rss_gb": [x["peak_rss_gb"] for x in rs],
            "peak_rss_gb_median": statistics.median(x["peak_rss_gb"] for x in rs),
            "wall_seconds": [x["wall_seconds"] for x in rs],
            "wall_seconds_median": statistics.median(x["wall_seconds"] for x in rs),
            "answers_equal_to_first_variants_run_1": [x["answers"] == base for x in rs], "answers": len(rs[0]["answers"]),
            **({"peak_rss_mb_by_stage": [x["peak_rss_mb_by_stage"] for x in rs]} if rs[0].get("peak_rss_mb_by_stage")
               else {})}
    old = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps([*old, result], indent=1) + "\n")
    print(json.dumps({v: {k: r[k] for k in ("peak_rss_gb", "wall_seconds", "answers_equal_to_first_variants_run_1")}
                      for v, r in result["variants"].items()}, indent=1))


if __name__ == "__main__":
    main()
