"""One process per output directory: a lock file beside it (`.NAME.lock` in its parent) holds the owner's pid.

A second flanlab process on the same output refuses at once, naming that pid; a lock whose process is gone (killed,
crashed) is taken over - the same liveness check as the mixer's `.partial-<pid>` directories. The lock lives beside
the directory, not in it, so a run that fails before writing anything leaves no directory behind.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .errors import FlanlabError


def lock_path(output: str | Path) -> Path:
    out = Path(output).resolve()
    return out.parent / f".{out.name}.lock"


def process_alive(pid: int) -> bool:
    """A running process: a killed one whose parent died too can linger as a zombie nobody reaps (in a container
    whose init does not), still listed in /proc, so its state is read."""
    if not Path("/proc").is_dir():
        return _kill0(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill0(pid: int) -> bool:  # pragma: no cover - systems without /proc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(lock: Path) -> int | None:
    try:
        text = lock.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


@contextmanager
def output_lock(output: str | Path, *, field: str = "output", enabled: bool = True):
    """Hold the output's lock for the duration of the block (a no-op when not `enabled`, e.g. on ranks > 0 of a
    torchrun job, whose rank 0 holds it). Re-entrant within one process (a run locks its stages' outputs too)."""
    if not enabled:
        yield
        return
    lock = lock_path(output)
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]  # removed again if left empty
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _owner(lock)
            if pid == os.getpid():  # this process holds it already
                yield
                return
            if pid is not None and process_alive(pid):
                raise FlanlabError(f"in use by another flanlab process (pid {pid}); wait for it to finish, stop it, "
                                   "or pick another output", file=output, field=field) from None
            lock.unlink(missing_ok=True)  # its process is gone: take over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:  # pragma: no cover - another process won the take-over race
        raise FlanlabError("in use by another flanlab process; pick another output", file=output, field=field)
    try:
        yield
    finally:
        if _owner(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        for d in made:  # directories only the lock needed: a run that wrote nothing leaves nothing
            try:
                d.rmdir()
            except OSError:
                break
