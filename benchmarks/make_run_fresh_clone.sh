#!/usr/bin/env bash
# `make run` as a new user meets it: a fresh clone (beside a link to the shared data, as in this workspace), install
# included, timed by /usr/bin/time -v (wall clock, peak RSS). Copies what it printed and the run's summary, run.json
# compare.json and both evaluations' results and predictions to benchmarks/results/default_run/.
#     bash benchmarks/make_run_fresh_clone.sh [SHARED_DIR]     (default: ../shared next to this checkout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${1:-$ROOT/../shared}
WORK=$(mktemp -d)
ln -s "$(cd "$SHARED" && pwd)" "$WORK/shared"
git clone -q "$ROOT" "$WORK/main"
cd "$WORK/main"
/usr/bin/time -v make run > "$WORK/stdout.txt" 2> "$WORK/stderr.txt"
OUT=$ROOT/benchmarks/results/default_run
rm -rf "$OUT" && mkdir -p "$OUT"
cp "$WORK/stdout.txt" "$OUT/make_run_stdout.txt"
# make's and flanlab's progress lines, then time -v's report (pip's "Location ... ignored" lines of this machine's
# pip configuration left out)
grep -v "^WARNING: Location 'file:///opt/" "$WORK/stderr.txt" > "$OUT/make_run_stderr.txt" || true
cp runs/main/summary.md runs/main/run.json runs/main/compare.json "$OUT/"
for stage in eval_before eval_after; do  # what the table is made from (flanlab rescore / compare can re-derive it)
  mkdir -p "$OUT/$stage" && cp runs/main/$stage/results.json runs/main/$stage/predictions.jsonl "$OUT/$stage/"
done
echo "commit $(git rev-parse HEAD)" > "$OUT/commit.txt"
grep -E "Elapsed|Maximum resident" "$WORK/stderr.txt"
