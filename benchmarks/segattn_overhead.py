"""How per-segment attention should batch segments: training-step throughput (fwd + bwd + Adafactor,
non-pad tokens/s) of one model on the same packed batches, for several values of the planner's
per-call overhead (segattn.CALL_OVERHEAD, in query-key pairs), and for dense attention with segment
masks. overhead 0 = one attention call per segment length; huge = one call padded to the longest
segment. Settings are interleaved over --repeats rounds; medians are reported.

    python benchmarks/segattn_overhead.py [--preset t5-1m] [--batches 10] [--repeats 5]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from flanlab.mixture import MixConfig, build_mixture, read_mixture
from flanlab.models import segattn
from flanlab.models.build import ModelSpec, build_model
from flanlab.models.packed import collate, loss_sum
from flanlab.train.packing import pack, tokenize_pair

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="t5-1m")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--batches", type=int, default=10)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--overheads", default="0,8192,32768,131072,1000000000")
a = ap.parse_args()

with tempfile.TemporaryDirectory() as d:
    build_mixture(MixConfig(total_examples=20000, output=str(Path(d) / "mix"), max_input_len=256), progress=False)
    model, tok = build_model(ModelSpec(preset=a.preset), seed=0)
    ed = model.config.is_encoder_decoder
    exs = [tokenize_pair(tok, r["inputs"], r["targets"], 256, 128, ed) for r in read_mixture(Path(d) / "mix")]
rows = pack(exs, ed, 256, 128)
batches = [collate(rows[i * a.batch:(i + 1) * a.batch], ed) for i in range(a.batches)]
key = ("enc_seg", "dec_seg") if ed else ("seg",)
tokens = sum(int((b[k] > 0).sum()) for b in batches for k in key)
from transformers.optimization import Adafactor  # noqa: E402
opt = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
model.train()


def run(segment_attention: bool = True) -> float:
    t = time.time()
    for b in batches:
        ls, n = loss_sum(model, b, segment_attention)
        (ls / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tokens / (time.time() - t)


settings = ["dense_masks"] + [int(x) for x in a.overheads.split(",")]
res: dict = {str(s): [] for s in settings}
run()  # warm-up
for _ in range(a.repeats):
    for s in settings:
        if s != "dense_masks":
            segattn.CALL_OVERHEAD = s  # the planner's cost model: a knob this benchmark sweeps
        res[str(s)].append(run(segment_attention=s != "dense_masks"))
out = {"preset": a.preset, "batch_rows": a.batch, "batches": a.batches, "repeats": a.repeats, "threads": torch.get_num_threads(),
       "median_tokens_per_s": {k: round(statistics.median(v)) for k, v in res.items()},
       "all_tokens_per_s": {k: [round(x) for x in v] for k, v in res.items()}}
p = Path(__file__).resolve().parent / "results" / f"segattn_overhead_{a.preset}.json"
p.write_text(json.dumps(out) + "\n")
print(json.dumps(out["median_tokens_per_s"]))
