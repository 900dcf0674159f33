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



def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _choose_wait_policy() -> dict:
    """OpenMP's wait policy for this process, from what the machine is doing as it starts. Spinning idle threads
    (ACTIVE, libgomp's default) are fastest on an idle machine, but next to another job they take the cores it
    needs and lose theirs: measured 78.7 -> 13.2 tokens/s, vs 55.0 -> 46.7 with sleeping threads (PASSIVE;
    benchmarks/thread_contention.py). So: ACTIVE while the 1-minute load average is under half the usable cores,
    else PASSIVE. A value the user set wins. It only takes effect before torch loads its OpenMP runtime: here."""
    if "OMP_WAIT_POLICY" in os.environ:
        return {"omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "chosen_by": "OMP_WAIT_POLICY set by the user"}
    cores = _usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this system
        load = float(cores)
    policy = "ACTIVE" if load < 0.5 * cores else "PASSIVE"
    os.environ["OMP_WAIT_POLICY"] = policy
    return {"omp_wait_policy": policy, "chosen_by": f"load average {load:.2f} on {cores} usable cores"}


THREADING = _choose_wait_policy()  # recorded in training summaries and evaluation results

__version__ = "0.1.0"


def configure_threads(threads: int | None = None) -> int:
    """torch's intra-op threads: `threads` if given, else no more than the cores this process may run on (a CPU
    affinity mask or container limit can be smaller than the machine). Returns the number set."""
    import torch
    n = threads or min(torch.get_num_threads(), _usable_cores())
    torch.set_num_threads(n)
    return n
