"""Small shared helpers."""
from __future__ import annotations

import ctypes
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


_WRITES = [0]


def write_point() -> None:
    """Where flanlab makes a write visible or durable. Fault injection for benchmarks/crash_consistency.py:
    FLANLAB_KILL_AT_WRITE=k makes the process SIGKILL itself at its k-th write point (kills land inside checkpoint,
    manifest and cache writes, not only between them); FLANLAB_COUNT_WRITES=FILE records how many there were."""
    kill_at, count_to = os.environ.get("FLANLAB_KILL_AT_WRITE"), os.environ.get("FLANLAB_COUNT_WRITES")
    if kill_at is None and count_to is None:
        return
    _WRITES[0] += 1
    if count_to:
        with open(count_to, "w") as f:
            f.write(str(_WRITES[0]))
    if kill_at is not None and _WRITES[0] == int(kill_at):
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def writing(path: str | Path):
    """An OSError raised while writing `path` names it (a failed write() or fsync() - a full disk, an I/O error -
    carries no file name of its own), so the one-line error says which file could not be written."""
    write_point()
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, f"{e.strerror or e}: cannot write", str(path)) from e
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # the old file stays as it was
        raise
    os.replace(tmp, path)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the OS or filesystem cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _aside(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.old-{os.getpid()}"


def publish_dir(tmp: str | Path, dest: str | Path) -> None:
    """Put a fully written directory `tmp` in place of `dest`: at every instant (and after a crash at any point)
    `dest` is the old directory or the new one. Where the OS can swap two names atomically (Linux renameat2) that is
    one step; elsewhere the old one is renamed aside first, and `recover_dir` puts it back if the process died
    between the two renames. `tmp`'s files are fsynced first (durable before visible); the old copy goes last."""
    tmp, dest = Path(tmp), Path(dest)
    for f in sorted(tmp.rglob("*")):
        if f.is_file():
            with writing(f), open(f, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [tmp, *(d for d in tmp.rglob("*") if d.is_dir())]:
        fsync_dir(d)
    write_point()
    if not dest.exists():
        os.rename(tmp, dest)
    elif _exchange(tmp, dest):
        write_point()
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old directory
    else:
        old = _aside(dest)
        os.rename(dest, old)
        write_point()
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)


def recover_dir(dest: str | Path) -> None:
    """Undo a `publish_dir` that died between its two renames (no atomic swap on this OS): the old directory back."""
    dest = Path(dest)
    olds = sorted(dest.parent.glob(f".{dest.name}.old-*"))
    if olds and not dest.exists():
        os.rename(olds[-1], dest)
        olds = olds[:-1]
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def resolve_path(path: str | Path, base: str | Path | None) -> Path:
    """`path` as written in a config: absolute, or relative to the config's directory `base` (when known)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells are str()-ed as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code_version() -> str:
    """The git commit the running flanlab source comes from ("<sha>-dirty" with uncommitted changes to it), or the
    package version outside a git checkout: results record the code that made them."""
    import subprocess
    from . import __version__
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if sha.returncode:
            return __version__
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; bytes that are not UTF-8 are an error naming the line and column."""
    from .errors import FlanlabError
    path = Path(path)
    if path.is_dir():
        raise FlanlabError("is a directory, not a file", file=path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise FlanlabError(f"line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col})",
                           file=path) from None
