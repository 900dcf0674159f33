"""Training throughput: non-pad tokens/s of flanlab's packed trainer vs a padded Hugging Face
Seq2SeqTrainer (dynamic padding per batch, DataCollatorForSeq2Seq) on the same model preset,
the same mixture and the same optimizer, in one run.

flanlab runs in three settings, to show where its speed comes from:
- packed: the default trainer - packed rows run as one unpadded token stream with per-segment
  attention (segattn), T5's gelu_new computed by one fused kernel;
- packed_unfused_gelu: the same with HF's own gelu_new module;
- dense_masks: the earlier trainer - packed rows padded to the batch's longest row, dense L x L
  attention with segment masks, HF's gelu_new.
Each setting and the baseline run `--repeats` times, interleaved; medians are reported.

    python benchmarks/train_speed.py [--preset t5-1m] [--steps 80] [--batch 16] [--repeats 3]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from flanlab.mixture import MixConfig, build_mixture, read_mixture
from flanlab.models.build import ModelSpec, build_model
from flanlab.train.packing import tokenize_pair
from flanlab.train.trainer import TrainConfig, train

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="t5-1m")
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--examples", type=int, default=20000)
ap.add_argument("--row-in", type=int, default=256, help="packed row capacity, input side (examples are truncated to 256)")
ap.add_argument("--row-out", type=int, default=128)
ap.add_argument("--repeats", type=int, default=3)
a = ap.parse_args()
MAX_IN, MAX_OUT = 256, 128

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    build_mixture(MixConfig(total_examples=a.examples, output=str(d / "mix"), max_input_len=MAX_IN), progress=False)

    # --- flanlab: packed rows, segment-isolated attention
    def ours(run, fused_gelu: bool = True, dense: bool = False):
        cfg = TrainConfig(mixture=str(d / "mix"), output=str(d / f"ours-{run}-{int(fused_gelu)}{int(dense)}"), steps=a.steps,
                          batch_size=a.batch, max_input_len=MAX_IN, max_target_len=MAX_OUT, row_input_len=a.row_in,
                          row_target_len=a.row_out, lr=3e-3, save_every=10**9, log_every=a.steps, tensorboard=False,
                          model=ModelSpec(preset=a.preset), segment_attention=not dense, fused_gelu=fused_gelu)
        s = train(cfg, progress=False).summary
        return s["train_tokens_this_run"] / s["seconds"], s

    # --- baseline: HF Seq2SeqTrainer, one example per row, padded to the longest in the batch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback, ByT5Tokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    _, tok = build_model(ModelSpec(preset=a.preset), seed=0)
    rows = []
    for r in read_mixture(d / "mix"):
        t = tokenize_pair(tok, r["inputs"], r["targets"], MAX_IN, MAX_OUT, True)
        rows.append({"input_ids": t.inputs, "attention_mask": [1] * len(t.inputs), "labels": t.targets})
    ds = Dataset.from_list(rows)
    hf_tok = ByT5Tokenizer(extra_ids=125)

    def hf(run: int):
        model, _ = build_model(ModelSpec(preset=a.preset), seed=0)
        base_collate = DataCollatorForSeq2Seq(hf_tok, model=model, padding="longest", label_pad_token_id=-100)
        counted = {"nonpad": 0, "padded": 0}

        def collate(features):
            counted["nonpad"] += sum(len(f["input_ids"]) + len(f["labels"]) for f in features)
            b = base_collate(features)
            counted["padded"] += b["input_ids"].numel() + b["labels"].numel()
            return b

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == 0 and "t0" not in counted:
                    counted["t0"] = time.time()

            def on_train_end(self, args, state, control, **kw):
                counted["t1"] = time.time()

        args = Seq2SeqTrainingArguments(output_dir=str(d / f"hf{run}"), per_device_train_batch_size=a.batch, max_steps=a.steps,
                                        optim="adafactor", learning_rate=3e-3, lr_scheduler_type="constant", save_strategy="no",
                                        report_to=[], logging_steps=10**9, dataloader_num_workers=0, disable_tqdm=True,
                                        use_cpu=True, seed=0)
        Seq2SeqTrainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Clock()]).train()
        return counted["nonpad"] / (counted["t1"] - counted["t0"]), counted

    ours("warmup")  # first-in-process costs (thread pools, lazy imports) stay out of the measurements
    runs = {"packed": [], "packed_unfused_gelu": [], "dense_masks": [], "hf": []}
    for run in range(a.repeats):
        tps, s = ours(run)
        runs["packed"].append(tps)
        runs["packed_unfused_gelu"].append(ours(run, fused_gelu=False)[0])
        runs["dense_masks"].append(ours(run, fused_gelu=False, dense=True)[0])
        tps, counted = hf(run)
        runs["hf"].append(tps)
        print(f"repeat {run + 1}/{a.repeats}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in runs.items()), flush=True)

med = {k: statistics.median(v) for k, v in runs.items()}
RESULT = json.dumps({
    "preset": a.preset, "row": [a.row_in, a.row_out], "truncation": [MAX_IN, MAX_OUT], "steps": a.steps, "batch_rows": a.batch,
    "threads": torch.get_num_threads(), "repeats": a.repeats,
    "flanlab_packed_nonpad_tokens_per_s": round(med["packed"], 1), "hf_padded_nonpad_tokens_per_s": round(med["hf"], 1),
    "ratio": round(med["packed"] / med["hf"], 2),
    "flanlab_packed_unfused_gelu_nonpad_tokens_per_s": round(med["packed_unfused_gelu"], 1),
    "ratio_unfused_gelu": round(med["packed_unfused_gelu"] / med["hf"], 2),
    "flanlab_dense_masks_nonpad_tokens_per_s": round(med["dense_masks"], 1), "ratio_dense_masks": round(med["dense_masks"] / med["hf"], 2),
    "ratio_per_repeat": [round(p / h, 2) for p, h in zip(runs["packed"], runs["hf"])],
    "all_runs_tokens_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
    "hf_pad_fraction": round(1 - counted["nonpad"] / counted["padded"], 3),
    "flanlab_tokens_per_step": round(s["train_tokens_this_run"] / a.steps), "hf_tokens_per_step": round(counted["nonpad"] / a.steps)})
out = Path(__file__).resolve().parent / "results" / ("train_speed.json" if a.preset == "t5-1m" else f"train_speed_{a.preset}.json")
out.parent.mkdir(exist_ok=True)
out.write_text(RESULT + "\n")
print(RESULT)
