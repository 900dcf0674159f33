"""The process's CPU threading: OpenMP's wait policy (chosen once, at a command's entry, before torch loads its
OpenMP runtime) and torch's intra-op threads. Importing flanlab changes nothing in the environment; `flanlab`'s
commands call `choose_wait_policy()` first, and the processes they launch inherit the choice."""
from __future__ import annotations

import os

_CHOSEN: dict | None = None


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose_wait_policy() -> dict:
    """OpenMP's wait policy for this process, from what the machine is doing as it starts. Spinning idle threads
    (ACTIVE, libgomp's default) are fastest on an idle machine, but next to another job they take the cores it
    needs and lose theirs: measured 78.7 -> 13.2 tokens/s, vs 55.0 -> 46.7 with sleeping threads (PASSIVE;
    benchmarks/thread_contention.py). So: ACTIVE while the 1-minute load average is under half the usable cores,
    else PASSIVE. A value the user set wins. Takes effect only before torch loads its OpenMP runtime."""
    global _CHOSEN
    if "OMP_WAIT_POLICY" in os.environ:
        _CHOSEN = {"omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "chosen_by": "OMP_WAIT_POLICY set by the user"}
        return _CHOSEN
    cores = _usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this system
        load = float(cores)
    policy = "ACTIVE" if load < 0.5 * cores else "PASSIVE"
    os.environ["OMP_WAIT_POLICY"] = policy
    _CHOSEN = {"omp_wait_policy": policy, "chosen_by": f"load average {load:.2f} on {cores} usable cores"}
    return _CHOSEN


def threading_record() -> dict:
    """What training summaries and evaluation results record about the policy."""
    if _CHOSEN is not None:
        return dict(_CHOSEN)
    policy = os.environ.get("OMP_WAIT_POLICY")
    return {"omp_wait_policy": policy or "OpenMP default",
            "chosen_by": "inherited from the launching flanlab command" if policy else "not chosen (library use)"}


def configure_threads(threads: int | None = None) -> int:
    """torch's intra-op threads: `threads` if given, else no more than the cores this process may run on (a CPU
    affinity mask or container limit can be smaller than the machine). Returns the number set."""
    import torch
    n = threads or min(torch.get_num_threads(), _usable_cores())
    torch.set_num_threads(n)
    return n


def torchrun(nproc: int, module: str, *args: str) -> int:
    """Run `python -m module args` in `nproc` processes on this machine (torchrun, standalone); its exit code."""
    import subprocess
    import sys
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                            "--standalone", "-m", module, *map(str, args)])


def die_with_parent() -> None:
    """A torchrun worker (LOCAL_RANK set) ends when the process that launched it does. torchrun starts each worker in a session of its
    own, so a SIGKILL of `flanlab train --nproc N` (or of torchrun) reaches only the launcher, and the workers were
    left waiting forever on a rendezvous that is gone - holding the output folder and its pipes (found by
    benchmarks/crash_consistency.py's FSDP stage). Linux: PR_SET_PDEATHSIG; elsewhere nothing changes."""
    import ctypes
    import signal
    import sys
    if "LOCAL_RANK" not in os.environ or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return
    if os.getppid() != parent or parent == 1:  # the launcher died before the request took effect
        os._exit(1)
