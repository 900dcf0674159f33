"""Mixture build speed: examples/s for a 200k-example mixture of the built-in suite (default formats).

    python benchmarks/mix_speed.py [--examples 200000] [--format jsonl|parquet]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from flanlab.mixture import MixConfig, build_mixture

ap = argparse.ArgumentParser()
ap.add_argument("--examples", type=int, default=200_000)
ap.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
a = ap.parse_args()
with tempfile.TemporaryDirectory() as d:
    cfg = MixConfig(total_examples=a.examples, output=str(Path(d) / "mix"), shard_format=a.format, shard_size=50_000)
    t = time.time()
    m = build_mixture(cfg, progress=False).manifest
    wall = time.time() - t
    size = sum(f.stat().st_size for f in (Path(d) / "mix").iterdir())
RESULT = (json.dumps({"examples": m["examples"], "wall_seconds": round(wall, 2), "examples_per_second": round(m["examples"] / wall, 1),
                  "shards": len(m["shards"]), "bytes": size, "format": a.format, "formats": len(m["per_format"]),
                  "tasks": len(m["per_task"])}))
out = Path(__file__).resolve().parent / "results" / "mix_speed.json"
out.parent.mkdir(exist_ok=True)
out.write_text(RESULT + "\n")
print(RESULT)
