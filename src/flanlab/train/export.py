"""A finished training's model in the forms other tools load: the PEFT adapter (the exact result of a LoRA run:
`PeftModel.from_pretrained(base, DIR/adapter)`), the merged model in fp32 or bf16 (`from_pretrained(DIR)`; bf16 is
half the size but rounds much of a small LoRA update away — the card says by how much), a model card, and an
upload to the Hugging Face Hub (huggingface_hub's upload_folder)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..errors import FlanlabError

PROBES = ["Question: What is the capital of France?\nAnswer:", "Translate to German: Good morning.",
          "Is 17 a prime number? Let's think step by step."]


def train_dir(run: Path) -> Path:
    """A training output (holding final/) or a `flanlab run` directory (holding train/final/)."""
    for d in (run, run / "train"):
        if (d / "final" / "config.json").is_file():
            return d
    raise FlanlabError("no finished training here (final/config.json missing): give a `flanlab train` output or a "
                       "`flanlab run` directory", file=run)


def _load(path: Path, dtype=torch.float32):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    cfg = AutoConfig.from_pretrained(str(path))
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_pretrained(str(path), dtype=dtype).eval()


@torch.no_grad()
def _logits(model, tok_dir: Path) -> list[torch.Tensor]:
    from ..models.tokenizer import load_tokenizer
    tok = load_tokenizer(tok_dir)
    out = []
    for text in PROBES:
        ids = torch.tensor([tok.bos + tok.encode(text)])
        kw = {"decoder_input_ids": ids[:, :1] * 0} if model.config.is_encoder_decoder else {}
        out.append(model(input_ids=ids, **kw).logits.float()[0])
    return out


def logit_gap(a, b, tok_dir: Path) -> dict:
    """max |Δlogit| and next-token agreement of two models on the probe prompts (every position)."""
    la, lb = _logits(a, tok_dir), _logits(b, tok_dir)
    gap = max(float((x - y).abs().max()) for x, y in zip(la, lb))
    same = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(la, lb))
    return {"max_abs_logit_diff": round(gap, 6), "argmax_agreement": f"{same}/{sum(len(x) for x in la)}",
            "prompts": len(PROBES)}


def adapter_model(final: Path):
    """base + adapter exactly as PEFT users load them (fp32), or None for a full finetune."""
    adapter = final / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        return None
    from peft import PeftModel
    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        return None  # a preset's base exists only in memory: nothing to load the adapter onto
    return PeftModel.from_pretrained(_load(Path(base)), str(adapter)).eval()


def export(run: Path, dest: Path, *, adapter: bool = True, merged: bool = True, dtype: str = "fp32") -> dict:
    """Write the chosen outputs to `dest` (a new directory) with a model card; returns what was written and the
    merged model's measured difference from base + adapter."""
    src = train_dir(run) / "final"
    if dest.exists() and any(dest.iterdir()):
        raise FlanlabError("destination exists and is not empty; pick a new directory", file=dest)
    dest.mkdir(parents=True, exist_ok=True)
    report: dict = {"source": str(src), "files": {}}
    exact = adapter_model(src)
    if adapter and exact is not None:
        shutil.copytree(src / "adapter", dest / "adapter")
        report["files"]["adapter"] = _size(dest / "adapter")
    if merged:
        model = _load(src, torch.bfloat16 if dtype == "bf16" else torch.float32)
        model.save_pretrained(str(dest), safe_serialization=True)
        for f in src.iterdir():  # the tokenizer files beside the weights
            if f.is_file() and f.name not in ("config.json", "model.safetensors", "README.md", "generation_config.json"):
                shutil.copy2(f, dest / f.name)
        report["files"]["merged"] = {"dtype": dtype, **_size(dest, "model*.safetensors")}
        if exact is not None:
            report["merged_vs_adapter"] = logit_gap(exact, _load(dest, torch.float32), src)
    card = (src / "README.md").read_text() if (src / "README.md").is_file() else "# flanlab model\n"
    (dest / "README.md").write_text(card + "\n## This export\n\n```json\n" + json.dumps(report, indent=1) + "\n```\n")
    return report


def _size(path: Path, pattern: str = "*") -> dict:
    files = [f for f in path.glob(pattern) if f.is_file()]
    return {"bytes": sum(f.stat().st_size for f in files), "files": sorted(f.name for f in files)}


def push_to_hub(folder: Path, repo: str, private: bool = True) -> str:
    """Upload `folder` to a Hub model repo (created if missing); offline or unauthorised: one line, exit 2."""
    try:
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="flanlab export")
    except Exception as e:  # network, offline mode, auth: the library raises many types
        raise FlanlabError(f"upload to the Hub repo '{repo}' failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                           "the export on disk is complete - retry with network and `hf auth login`",
                           file=folder) from None
    return str(getattr(info, "commit_url", info))


def model_card(cfg, summary: dict, manifest: dict | None) -> str:
    """The card published with final/: base model and its license, data mixture, steps, loss."""
    base = cfg.model.checkpoint or f"preset {cfg.model.preset}"
    lines = ["---", "library_name: " + ("peft" if cfg.model.lora is not None else "transformers"),
             "tags: [flanlab, flan, instruction-tuning]", "---", "", "# Flan-finetuned " + str(base), "",
             f"- base model: `{base}` — its license applies to these weights (the base's own model card says which)",
             f"- finetuning: {summary.get('steps')} steps, {cfg.optimizer}, lr {cfg.lr} ({cfg.lr_schedule}, warm-up "
             f"{cfg.warmup_steps}), batch {cfg.batch_size}, precision {cfg.precision}; final loss "
             f"{summary.get('final_loss')}",
             "- LoRA: " + (f"r={cfg.model.lora.r}, alpha={cfg.model.lora.alpha}; the adapter is in adapter/ "
                           "(PeftModel.from_pretrained(base, 'adapter')), the merged model here in fp32"
                           if cfg.model.lora is not None else "no (full finetune)")]
    if manifest:
        lines.append(f"- data: flanlab mixture of {manifest.get('examples')} examples from "
                     f"{len(manifest.get('per_task', {}))} tasks; per collection "
                     f"{json.dumps(manifest.get('per_collection', {}))}; n-gram decontaminated against the benchmarks")
    lines += ["", "Made with flanlab (code " + str(summary.get("code", "")) + ")."]
    return "\n".join(lines) + "\n"
