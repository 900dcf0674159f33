"""The whole-benchmark evaluations (examples/mmlu_full.yaml, examples/bbh_full.yaml), recorded: one run's wall
time, peak RSS and CPU (from `/usr/bin/time -v`'s log), score, engine phase counters and the commit it ran on; with
`--reference`, how many of its predictions equal another run's (bf16 against fp32), item by item.

    /usr/bin/time -v flanlab eval examples/bbh_full.yaml -o runs/bbh_bf16 2> bbh_bf16.log
    python benchmarks/full_eval.py runs/bbh_bf16 --time-log bbh_bf16.log --name "bbh bf16 r2" [--reference runs/bbh_fp32]
        -> appends to benchmarks/results/full_eval.json
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "full_eval.json"


def time_log(path: Path) -> dict:
    """Wall seconds, peak RSS (GB), user and system CPU seconds from GNU time's -v output."""
    text = path.read_text()
    grab = lambda label: re.search(rf"{re.escape(label)}: (.+)", text).group(1).strip()  # noqa: E731
    h, m, s = ([0] + [float(x) for x in grab("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")])[-3:]
    return {"wall_seconds": round(h * 3600 + m * 60 + s, 1),
            "peak_rss_gb": round(int(grab("Maximum resident set size (kbytes)")) / 1024 ** 2, 2),
            "user_cpu_seconds": float(grab("User time (seconds)")), "system_cpu_seconds": float(grab("System time (seconds)"))}


def predictions(run: Path) -> dict:
    return {(r["id"], r["mode"]): r for r in map(json.loads, (run / "predictions.jsonl").open())}


def summarize(run: Path, log: Path | None, reference: Path | None) -> dict:
    res = json.loads((run / "results.json").read_text())
    rows = {f"{b} {m}": {k: r[k] for k in ("score", "ci95", "random", "n", "no_answer_pct", "unparsed_pct") if k in r}
            for b, modes in res["benchmarks"].items() for m, r in modes.items()}
    e = res["engine"]
    phases = {p: {"tokens": e[f"{p}_tokens"], "seconds": e[f"{p}_seconds"],
                  "tokens_per_second": round(e[f"{p}_tokens"] / e[f"{p}_seconds"], 1)}
              for p in ("prefill", "decode", "loglik") if e.get(f"{p}_seconds")}
    out = {"run": str(run), "code": res["code"], "precision": res["precision"], "threads": res["threads"],
           "eval_seconds": res["seconds"], "results": rows, "phases": phases,
           "shared_prefix_tokens": e.get("shared_prefix_tokens")}
    if log:
        out["process"] = time_log(log)
    if reference:
        a, b = predictions(run), predictions(reference)
        same = sum(a[k]["answer"] == b[k]["answer"] for k in a)
        score = lambda p: round(100 * sum(p[k]["score"] for k in a) / len(a), 2)  # noqa: E731  on a's items
        out["vs_reference"] = {"reference": str(reference), "reference_precision": json.loads(
            (reference / "results.json").read_text())["precision"], "identical_answers": same, "items": len(a),
            "identical_pct": round(100 * same / len(a), 2), "score_on_these_items": score(a),
            "reference_score_on_these_items": score(b),
            "items_scored_differently": sum(a[k]["score"] != b[k]["score"] for k in a)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--time-log", type=Path)
    ap.add_argument("--reference", type=Path)
    args = ap.parse_args()
    record = json.loads(OUT.read_text()) if OUT.is_file() else {}
    record[args.name] = summarize(args.run, args.time_log, args.reference)
    OUT.write_text(json.dumps(record, indent=1))
    print(json.dumps(record[args.name], indent=1))


if __name__ == "__main__":
    main()
