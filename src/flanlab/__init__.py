"""flanlab: the Flan system (Chung et al., 2022) in miniature.

Pipeline stages, one subpackage each:
  tasks/       task collection: Dataset x TaskCategory = Task, templates, sources
  formats/     zero/few-shot, options, chain-of-thought, input inversion, exemplar-only
  mixture/     examples-proportional mixing with caps, Flan 2022 submixtures, decontamination, shards
  models/      presets, checkpoints, tokenizers, packed forward (per-segment attention) - shared by train and eval
  train/       packed encoder-decoder / decoder-only finetuning
  evaluate/    MMLU, BBH, TyDiQA, MGSM, BIG-bench; direct, CoT, self-consistency
  experiments/ end-to-end runs, scaling sweeps and reports
"""
import os

# Idle OpenMP threads sleep instead of spinning (libgomp spins by default). On a shared CPU spinning threads take
# the cores another process needs, and lose theirs when it runs (benchmarks/thread_contention.py). It only takes
# effect if set before torch loads its OpenMP runtime, so here; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def configure_threads(threads: int | None = None) -> int:
    """torch's intra-op threads: `threads` if given, else no more than the cores this process may run on (a CPU
    affinity mask or container limit can be smaller than the machine). Returns the number set."""
    import torch
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = threads or min(torch.get_num_threads(), available)
    torch.set_num_threads(n)
    return n
