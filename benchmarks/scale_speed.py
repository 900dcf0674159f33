"""DDP vs FSDP on 2 CPU processes (gloo), in one run: tokens/s and memory per process at t5-20m and llama-20m, in
fp32 and bf16 (autocast; FSDP then gathers blocks as bf16).

Per process it reports
- parameter + optimizer bytes at their peak: DDP holds every parameter and all optimizer state all the time; FSDP
  holds its shards plus, while a unit (block) runs forward or backward, that unit's gathered parameters - counted
  by watching FSDP's unshard/reshard transitions (torch-internal FSDPParamGroup methods; measurement only);
- peak RSS (ru_maxrss: everything, torch's libraries and activations included);
- non-pad tokens/s of the training steps after the first (the first pays one-time set-up).
Configurations run interleaved, `--repeats` times, in alternating order; medians and ranges are reported.

    python benchmarks/scale_speed.py [--steps 12] [--repeats 2] [--batch 8] [--precisions fp32,bf16]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
OUT = HERE.parent / "results" / "scale_speed.json"


def worker(args) -> None:
    """One training run under torchrun; each rank appends its measurements to args.report."""
    import torch.distributed as dist
    from flanlab.train.trainer import TrainConfig, train
    peak = {"live": 0, "sharded": 0, "max": 0}
    if args.strategy == "fsdp":
        from torch.distributed.fsdp._fully_shard._fsdp_param_group import FSDPParamGroup

        def nbytes(group) -> int:
            # gathered in the mixed-precision dtype when there is one (bf16), else in the shards' own
            return sum(p._orig_size.numel() * (p.param_dtype or p.orig_dtype).itemsize for p in group.fsdp_params)

        def patch(name, sign):
            orig = getattr(FSDPParamGroup, name)

            def wrapped(self, *a, **k):
                was = self.is_unsharded
                out = orig(self, *a, **k)
                if was != self.is_unsharded:
                    peak["live"] += sign * nbytes(self)
                    peak["max"] = max(peak["max"], peak["live"])
                return out
            setattr(FSDPParamGroup, name, wrapped)
        patch("_to_unsharded", +1)
        patch("_to_sharded", -1)
        patch("_to_sharded_post_forward", -1)
    cfg = TrainConfig(mixture=args.mixture, output=args.output, steps=args.steps, batch_size=args.batch,
                      max_input_len=256, max_target_len=128, optimizer="adafactor", lr=1e-3, save_every=10 ** 9,
                      log_every=1, tensorboard=False, threads=1, strategy=args.strategy, precision=args.precision,
                      model={"preset": args.preset})
    s = train(cfg, progress=False).summary
    rank = dist.get_rank() if dist.is_initialized() else 0
    steps = [json.loads(line) for line in (Path(args.output) / "metrics.jsonl").read_text().splitlines()]
    # tokens/s over steps 2..N on all ranks (rank 0's metrics: each step's all-rank tokens/s, and elapsed time)
    tps = None
    if rank == 0:
        dts = [b["elapsed"] - a["elapsed"] for a, b in zip(steps, steps[1:])]
        tps = sum(m["tokens_per_s"] * dt for m, dt in zip(steps[1:], dts)) / sum(dts)
    params, opt = s["param_bytes_per_rank"], s["optimizer_bytes_per_rank"]
    rec = {"preset": args.preset, "strategy": args.strategy, "precision": args.precision, "rank": rank,
           "tokens_per_s": tps,
           "param_bytes": params, "optimizer_bytes": opt,
           "peak_param_opt_bytes": params + opt + peak["max"],  # shards + the largest set of gathered units at once
           "peak_gathered_bytes": peak["max"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "params": s["params"]}
    with open(args.report, "a") as f:
        f.write(json.dumps(rec) + "\n")
    if dist.is_initialized():
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8, help="packed rows per step, across both processes")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--presets", default="t5-20m,llama-20m")
    ap.add_argument("--precisions", default="fp32,bf16")
    a = ap.parse_args()
    from flanlab.mixture import MixConfig, build_mixture
    precisions = a.precisions.split(",")
    configs = [(p, s, m) for p in a.presets.split(",") for m in precisions for s in ("ddp", "fsdp")]
    runs = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        build_mixture(MixConfig(total_examples=4000, output=str(d / "mix"), max_input_len=256), progress=False)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for r in range(a.repeats):
            for preset, strategy, precision in (configs if r % 2 == 0 else configs[::-1]):
                name = f"{preset}-{strategy}-{precision}-{r}"
                report = d / f"{name}.jsonl"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                       str(HERE), "--worker", "--preset", preset, "--strategy", strategy, "--precision", precision,
                       "--mixture", str(d / "mix"), "--output", str(d / f"out-{name}"), "--steps", str(a.steps),
                       "--batch", str(a.batch), "--report", str(report)]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if p.returncode:
                    sys.exit(p.stdout[-3000:] + p.stderr[-3000:])
                recs = [json.loads(line) for line in report.read_text().splitlines()]
                runs.append({"repeat": r, "preset": preset, "strategy": strategy, "precision": precision,
                             "ranks": recs})
                tps = next(x["tokens_per_s"] for x in recs if x["tokens_per_s"])  # rank 0's record has it
                print(preset, strategy, precision, r, round(tps, 1), flush=True)

    def med(xs):
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}
    summary = {}
    for preset in a.presets.split(","):
        for precision in precisions:
            def mine(x):
                return x["preset"] == preset and x["precision"] == precision
            per = {}
            for strategy in ("ddp", "fsdp"):
                ranks = [k for x in runs if mine(x) and x["strategy"] == strategy for k in x["ranks"]]
                per[strategy] = {
                    "tokens_per_s": med([k["tokens_per_s"] for k in ranks if k["tokens_per_s"]]),
                    "peak_param_opt_mb_per_rank": med([k["peak_param_opt_bytes"] / 2 ** 20 for k in ranks]),
                    "param_opt_mb_between_steps": med([(k["param_bytes"] + k["optimizer_bytes"]) / 2 ** 20
                                                       for k in ranks]),
                    "peak_rss_mb_per_rank": med([k["peak_rss_mb"] for k in ranks]),
                    "params": ranks[0]["params"]}
            ratio = (per["fsdp"]["peak_param_opt_mb_per_rank"]["median"]
                     / per["ddp"]["peak_param_opt_mb_per_rank"]["median"])
            pairs = []  # throughput cost, paired by repeat (the two ran back to back)
            for r in range(a.repeats):
                t = {x["strategy"]: next(k["tokens_per_s"] for k in x["ranks"] if k["tokens_per_s"])
                     for x in runs if mine(x) and x["repeat"] == r}
                pairs.append(t["fsdp"] / t["ddp"])
            summary[f"{preset} {precision}"] = {
                **per, "fsdp_over_ddp_peak_param_opt_memory": round(ratio, 3), "fsdp_over_ddp_tokens_per_s": med(pairs),
                "peak_rss_ratio": round(per["fsdp"]["peak_rss_mb_per_rank"]["median"]
                                        / per["ddp"]["peak_rss_mb_per_rank"]["median"], 3)}
    out = {"setup": {"processes": 2, "backend": "gloo (CPU)", "threads_per_process": 1, "steps": a.steps,
                     "timed_steps": a.steps - 1, "packed_rows_per_step": a.batch, "row_tokens": "256 in + 128 out",
                     "optimizer": "adafactor", "repeats": a.repeats, "torch": __import__("torch").__version__},
           "summary": summary, "runs": runs}
    OUT.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        ap = argparse.ArgumentParser()
        for k in ("--preset", "--strategy", "--precision", "--mixture", "--output", "--report"):
            ap.add_argument(k)
        ap.add_argument("--steps", type=int)
        ap.add_argument("--batch", type=int)
        ap.add_argument("--worker", action="store_true")
        worker(ap.parse_args())
    else:
        main()
