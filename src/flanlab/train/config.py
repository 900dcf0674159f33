"""The training config: what train/trainer.py runs and train/data.py reads (its own module, so neither imports
the other)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..config import StrictModel
from ..models.build import ModelSpec


class TrainConfig(StrictModel):
    mixture: str = "runs/mixture"
    output: str = "runs/train"
    model: ModelSpec = Field(default_factory=ModelSpec)
    seed: int = 0
    steps: int = Field(200, gt=0)
    batch_size: int = Field(16, gt=0, description="packed rows per optimizer step, across all processes")
    grad_accum: int = Field(1, gt=0)
    max_input_len: int = Field(256, gt=1)
    max_target_len: int = Field(128, gt=1)
    packing: bool = True
    # capacity of a packed row (defaults: the truncation lengths); for decoder-only rows the sum is the row length.
    # On the per-segment path (T5, Llama, Gemma3) rows only decide how many examples a step holds; on the dense-mask
    # path set them to the data's input:target ratio so neither side of a T5 row runs half empty.
    row_input_len: int | None = Field(None, gt=1)
    row_target_len: int | None = Field(None, gt=1)
    # batch packed rows of similar length together (within windows of 64 steps, window order shuffled per epoch),
    # so on the dense-mask path a step of short-target rows is not padded to the longest CoT target; deterministic
    # per (seed, epoch). The per-segment path has no padding to save.
    group_by_length: bool = False
    optimizer: Literal["adafactor", "adamw", "sgd"] = "adafactor"  # sgd: plain, no momentum (tests, baselines)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(0, ge=0)
    # the learning rate after warm-up: constant (the paper's), or decayed to min_lr_ratio x lr at the last step
    # (`steps`), linearly or along a half cosine, as transformers' get_{linear,cosine}_schedule_with_warmup
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    # decoder-only chat models: each example's inputs as one user turn of the tokenizer's chat template, the target
    # as the assistant's turn (loss on it only); evaluate with the eval config's chat_template: true to match
    chat_template: bool = False
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    save_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)
    resume: bool = True
    tensorboard: bool = True
    # Weights & Biases (pip install "flanlab[wandb]"): every logged step, resumed runs continue the same W&B run;
    # WANDB_MODE=offline writes it locally. metrics.jsonl is written either way
    wandb: bool = False
    wandb_project: str = "flanlab"
    max_examples: int | None = None
    threads: int | None = None
    # recompute each block's activations in the backward pass: less memory (longer rows, bigger models), ~30% more time
    # (gemma-3-270m LoRA, 4 x 1,024 tokens: 0.75x the tokens/s, peak RSS 9.9 -> 5.0 GB; docs/results.md)
    gradient_checkpointing: bool = False
    # run packed rows as one unpadded stream with attention per segment (T5, Llama, Gemma3); false: dense L x L
    # attention with segment masks (any architecture). Same loss and gradients (tested); a speed switch kept for
    # benchmarks.
    segment_attention: bool = True
    # the per-segment path's attention kernel (models.segattn.KERNELS): auto = the fused kernels where they apply;
    # matmul = plain matmul/softmax/matmul, the reference that benchmarks compare the fused kernels against
    attention_kernel: Literal["auto", "sdpa", "matmul"] = "auto"
    # T5's gelu_new computed by one fused kernel (models.fuse_gelu; the same function, ~8% faster steps on t5-1m)
    fused_gelu: bool = True
    # several processes: ddp replicates model and optimizer in each; fsdp shards parameters, gradients and optimizer
    # state across them (torch fully_shard, one unit per transformer block) and writes sharded checkpoints
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # bf16: forward and backward under bfloat16 autocast; weights, gradients and optimizer state stay fp32
    precision: Literal["fp32", "bf16"] = "fp32"
    # LoRA with precision bf16: the frozen base weights stored in bfloat16 (half their memory, and autocast no longer
    # casts them on every step); the adapters, their gradients and optimizer state stay fp32, and final/ is merged
    # in fp32. Not bit-equal to fp32 storage: the base is rounded to bf16 once (autocast rounds it for every matmul
    # anyway, but norms and embeddings then see bf16 weights too). benchmarks/precision_speed.py measures both.
    frozen_weights: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: this process's GPU when CUDA is available

    @model_validator(mode="after")
    def _frozen_weights_need_lora_and_bf16(self):
        if self.frozen_weights == "bf16":
            if self.model.lora is None:
                raise ValueError("frozen_weights: bf16 needs model.lora (without LoRA every weight is trained, and "
                                 "trained weights stay fp32)")
            if self.precision != "bf16":
                raise ValueError("frozen_weights: bf16 needs precision: bf16 (fp32 matmuls cannot take bf16 weights)")
            if self.strategy == "fsdp":
                raise ValueError("frozen_weights: bf16 is not supported with strategy: fsdp (one dtype per shard "
                                 "unit); use strategy: ddp or frozen_weights: fp32")
        return self
