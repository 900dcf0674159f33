"""`flanlab eval`: run benchmarks x prompting modes, write results.json, results_lm_eval.json (lm-evaluation-harness's
schema), predictions.jsonl, results.md."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..memory import malloc_record
from ..runtime import configure_threads, threading_record
from ..config import StrictModel
from ..utils import atomic_write_text, code_version, markdown_table, resolve_path
from ..errors import FlanlabError
from ..outlock import output_lock
from ..tasks.registry import RegistrySpec
from .benchmarks import (Benchmark, EvalItem, load_bbh, load_bigbench, load_gsm8k, load_mgsm, load_mmlu, load_synthetic,
                         load_tydiqa)
from ..models.device import Processes, usable_precision
from .answer_cache import model_fingerprint
from .engine import Engine
from .requests import GenRequest
from .lm_eval_format import to_lm_eval
from .scoring import (COT_PHRASES, answer_form_ok, as_number, bootstrap_ci, exact_match, extract_choice, extract_cot_answer,
                      extract_direct_answer, extract_number, f1, letter_match, majority_vote, normalized_score,
                      paper_normalized_average,
                      number_match, strict_match)

DEFAULT_SHOTS = {"mmlu": 5, "bbh": 3, "tydiqa": 1, "mgsm": 8, "gsm8k": 8, "bigbench": 0, "synthetic": 0,
                 "realtoxicityprompts": 0, "generation": 0}
Mode = Literal["direct", "cot", "cot_sc"]


class BenchmarkSpec(StrictModel):
    name: Literal["mmlu", "bbh", "tydiqa", "mgsm", "gsm8k", "bigbench", "synthetic", "realtoxicityprompts",
                  "generation"]
    label: str | None = None
    path: str | None = None
    shots: int | None = Field(None, ge=0)
    modes: list[Mode] = Field(default_factory=lambda: ["direct"])
    limit: int | None = Field(None, gt=0)
    # the parts of the benchmark kept: MMLU subjects, BBH tasks, MGSM / TyDiQA languages, BIG-bench and synthetic
    # tasks (globs), RealToxicityPrompts' toxic / nontoxic / challenging prompts; unset: all
    subsets: list[str] | None = None
    RENAMED: ClassVar[dict[str, str]] = {"tasks": "subsets", "languages": "subsets"}
    options: bool = False
    mc_scoring: Literal["generate", "loglik"] = "generate"
    exemplars: Literal["native", "en"] = "native"  # MGSM: native-language CoT exemplars (the paper's) or English
    # built-in tasks: few-shot prompts of bare input/answer pairs, no template text (the paper's Figure 3 format)
    exemplar_only: bool = False
    # where the data comes from without a `path`: auto = FLANLAB_DATA if it holds this benchmark, else the Hugging
    # Face Hub (flanlab.data.catalog names each benchmark's repo, revision and configs); local / hub = only that one
    source: Literal["auto", "local", "hub"] = "auto"
    hub: str | None = None  # another Hub repo in the same published schema
    revision: str | None = None  # a Hub branch, tag or commit (default: the catalog's)
    # realtoxicityprompts and generation: sampling (unset: the RTP protocol's k=25, T=1, p=0.9, 20 new tokens; for
    # generation one greedy response of up to 256 tokens), and for RTP a toxicity scorer
    samples: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, gt=0)
    scorer: str = "profanity"  # profanity | hf:<checkpoint> | perspective (evaluate/toxicity.py)
    scorer_label: str | None = None  # hf:<checkpoint>: the label whose probability counts (default: the toxic one)
    perspective_key_env: str = "PERSPECTIVE_API_KEY"  # perspective: the environment variable holding the key
    perspective_qps: float = Field(1.0, gt=0)  # perspective: requests per second (its quota)

    @model_validator(mode="after")
    def _rtp_subsets(self):
        known = ("toxic", "nontoxic", "challenging")
        if self.name == "realtoxicityprompts" and any(s not in known for s in self.subsets or ()):
            raise ValueError(f"realtoxicityprompts subsets are {', '.join(known)} (got {self.subsets})")
        return self

    def sampling(self) -> "BenchmarkSpec":
        """This spec with its sampling settings resolved to the benchmark's defaults."""
        rtp = self.name == "realtoxicityprompts"
        defaults = {"samples": 25 if rtp else 1, "temperature": 1.0 if rtp else 0.0, "top_p": 0.9 if rtp else 1.0,
                    "max_new_tokens": 20 if rtp else 256}
        return self.model_copy(update={k: v for k, v in defaults.items() if getattr(self, k) is None})


class DecodingSpec(StrictModel):
    direct_max_new_tokens: int = Field(32, gt=0)
    cot_max_new_tokens: int = Field(256, gt=0)
    sc_samples: int = Field(8, gt=1)
    temperature: float = Field(0.7, gt=0)
    top_k: int = Field(40, ge=0)


class EvalConfig(StrictModel):
    checkpoint: str | None = None
    preset: str | None = None  # an untrained model built from config (baselines, tests)
    output: str = "runs/eval"
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name="synthetic", subsets=["held_out"])])
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    batch_tokens: int = Field(16384, gt=0)
    max_prompt_len: int = Field(2048, gt=8)
    # rows of one batch (a sampled request's n samples are n rows): wider batches decode faster on a CPU (RTP's
    # 25 samples per prompt: 150 rows sampled 1.7x as fast as 32 in bf16)
    max_batch_rows: int = Field(32, gt=0)
    hub_cache: str = "~/.cache/flanlab/hub"  # Hub files converted to the upstream layouts (downloads: HF_HOME)
    # instruct models: wrap each prompt as one user turn of the tokenizer's chat template (the paper and lm-eval
    # evaluate with plain prompts; off by default)
    chat_template: bool = False
    seed: int = 0
    threads: int | None = None
    # bf16: forwards under bfloat16 autocast (sampling-heavy evaluations: RealToxicityPrompts' 25 samples per prompt);
    # fp32 is what the lm-eval agreement is measured in. Falls back to fp32 on a CPU without native bfloat16
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: this process's GPU when CUDA is available


def load_benchmark(spec: BenchmarkSpec, registry_spec: RegistrySpec, base: Path | None = None, idx: int = 0,
                   hub_cache: str = "~/.cache/flanlab/hub") -> Benchmark:
    shots = spec.shots if spec.shots is not None else DEFAULT_SHOTS[spec.name]
    where = f"benchmarks[{idx}]"

    def need_path():
        from ..data.resolve import resolve_benchmark
        try:
            path, source = resolve_benchmark(spec.name, path=spec.path, configs=spec.subsets,
                                             base=base, source=spec.source, repo=spec.hub, revision=spec.revision,
                                             cache=hub_cache)
        except FlanlabError as e:
            raise FlanlabError(e.message, file=e.file, field=f"{where}.{e.field or 'path'}") from None
        sources.append(source)
        return path
    sources: list[dict] = []
    bench = _load(spec, need_path, shots, where, registry_spec, base)
    if sources:
        bench.source = sources[0]
    return bench


def _rtp(spec, path, shots):
    from .rtp import load_rtp
    return load_rtp(path, spec.limit, spec.subsets)


def _generation(spec, path, shots):
    from .generation import load_prompts
    return load_prompts(path, spec.limit)


# benchmark name -> its loader (spec, files, shots); where the files come from is flanlab.data.catalog's
FILE_LOADERS = {
    "mmlu": lambda spec, path, shots: load_mmlu(path, shots, spec.subsets, spec.limit),
    "bbh": lambda spec, path, shots: load_bbh(path, shots, spec.subsets, spec.limit),
    "tydiqa": lambda spec, path, shots: load_tydiqa(path, shots, spec.subsets, spec.limit),
    "mgsm": lambda spec, path, shots: load_mgsm(path, shots, spec.subsets, spec.limit, spec.exemplars),
    "gsm8k": lambda spec, path, shots: load_gsm8k(path, shots, spec.limit),
    "realtoxicityprompts": _rtp,
}


def _load(spec: BenchmarkSpec, need_path, shots: int, where: str, registry_spec: RegistrySpec,
          base: Path | None) -> Benchmark:
    if spec.name in FILE_LOADERS:
        return FILE_LOADERS[spec.name](spec, need_path(), shots)
    if spec.name == "generation":  # the user's own prompts: a path, no other source
        if not spec.path:
            raise FlanlabError("generation needs 'path' (a JSONL file of {\"id\", \"prompt\"} lines)",
                               field=f"{where}.path")
        return _generation(spec, resolve_path(spec.path, base), shots)
    if spec.name == "bigbench":  # shipped with flanlab (or an installed bigbench package)
        if not spec.subsets:
            raise FlanlabError("bigbench needs 'subsets' (task names or globs)", field=f"{where}.subsets")
        return load_bigbench(spec.subsets, spec.path, shots, spec.limit)
    if spec.exemplar_only and not shots:
        raise FlanlabError("exemplar-only prompts are few-shot: set shots >= 1", field=f"{where}.shots")
    reg = registry_spec.build(base)
    return load_synthetic(reg, spec.subsets or ["held_out"], shots, spec.limit or 100, spec.options,
                          name=spec.label or "synthetic", exemplar_only=spec.exemplar_only)


def canonical(item: EvalItem, text: str, mode: str) -> str:
    """The answer a model output commits to, in the item's canonical form."""
    if mode == "direct":
        ans = extract_direct_answer(text)
    else:
        ans = extract_cot_answer(text, item.answer_phrases or COT_PHRASES)
    if item.answer_type == "letter":
        return extract_choice(ans, None, letters=True)
    if item.answer_type == "choice":
        return extract_choice(ans, item.options)
    if item.answer_type == "number":
        # direct: the output must be the number; CoT: the number inside "The answer is ..."
        num = as_number(ans) if mode == "direct" else extract_number(ans)
        return num if num is not None else ans
    return ans


def score(item: EvalItem, answer: str) -> dict:
    if item.answer_type == "letter":
        return {"score": letter_match(answer, item.golds)}
    if item.answer_type == "number":  # `answer` is canonical: a bare number, or text that committed to none
        return {"score": number_match(answer, item.golds)}
    if item.answer_type == "exact":
        return {"score": strict_match(answer, item.golds)}
    if item.answer_type == "span":
        return {"score": exact_match(answer, item.golds), "f1": f1(answer, item.golds)}
    return {"score": exact_match(answer, item.golds)}


def aggregate(items: list[EvalItem], values: list[float], how: str, seed: int = 0) -> dict:
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.group, []).append(i)
    v = np.asarray(values, float)
    if how == "macro":
        w = np.empty(len(items))
        for idx in groups.values():
            w[idx] = 1.0 / (len(groups) * len(idx))
    else:
        w = np.full(len(items), 1.0 / len(items))
    mean = float((v * w).sum() * 100)
    lo, hi = bootstrap_ci(v, w, seed=seed)
    rnd = np.asarray([it.random for it in items])
    return {"score": round(mean, 3), "ci95": [round(lo * 100, 3), round(hi * 100, 3)],
            "random": round(float((rnd * w).sum()), 3), "n": len(items),
            "per_group": {g: round(float(v[idx].mean() * 100), 2) for g, idx in sorted(groups.items())}}


def context(engine: Engine, item: EvalItem, mode: str, chat: bool = False) -> str:
    """What the model continues: the prompt, and for a decoder-only model the item's target delimiter (its
    trailing spaces are left to the answer's own tokens, as lm-eval leaves them); with `chat`, the prompt as
    one user turn of the tokenizer's chat template, the answer following the assistant header."""
    prompt = item.prompts[mode]
    if chat:
        return engine.tok.chat_prompt(prompt)
    return prompt if engine.encoder_decoder else prompt + item.target_delimiter.rstrip(" ")


def loglik_request(engine: Engine, item: EvalItem, chat: bool = False) -> tuple[str, list[str]]:
    """(context, continuations) ranking the item's options: a decoder-only model scores delimiter + option
    (" A"), as lm-eval; an encoder-decoder model, or a chat turn, the option alone."""
    if chat:
        return engine.tok.chat_prompt(item.prompts["direct"]), list(item.options)
    prefix = "" if engine.encoder_decoder else item.target_delimiter
    return item.prompts["direct"], [prefix + o for o in item.options]


def requests_for(engine: Engine, items: list[EvalItem], mode: str, dec: DecodingSpec, seed: int,
                 chat: bool = False) -> list[GenRequest]:
    key = "direct" if mode == "direct" else "cot"
    n, temperature, top_k = (dec.sc_samples, dec.temperature, dec.top_k) if mode == "cot_sc" else (1, 0.0, 0)
    max_new = dec.direct_max_new_tokens if mode == "direct" else dec.cot_max_new_tokens
    default_stop = ("\n\n",) if mode == "direct" else ()
    return [GenRequest(prompt=context(engine, it, key, chat), n=n, temperature=temperature, top_k=top_k,
                       max_new_tokens=max_new, stop=it.stop.get(key, default_stop), seed=seed) for it in items]


def run_benchmark(engine: Engine, bench: Benchmark, modes: list[str], dec: DecodingSpec, mc_scoring: str, seed: int,
                  where: str = "benchmarks", chat: bool = False, progress=None, label: str | None = None
                  ) -> tuple[dict, list[dict]]:
    results, preds = {}, []
    for mode in modes:
        if progress is not None:  # an EvalProgress: told which benchmark and mode the engine's requests belong to
            progress.begin(f"{label or bench.name} {mode}")
            engine.progress = progress
        key = "direct" if mode == "direct" else "cot"
        items = [it for it in bench.items if key in it.prompts]
        if not items:
            hint = (" - its Flan CoT exemplars come from lm-eval's task files: pip install 'flanlab[prompts]' (or "
                    "pip install --no-deps lm-eval==0.4.13)" if bench.name in ("mmlu", "bbh") else "")
            raise FlanlabError(f"{bench.name} has no {key} prompts (no exemplars with reasoning){hint}; or drop mode "
                               f"'{mode}'", field=f"{where}.modes")
        t0 = time.time()
        lls = None
        if mode == "direct" and mc_scoring == "loglik" and all(it.options for it in items):
            lls = engine.loglik([loglik_request(engine, it, chat) for it in items])
            outs = [[it.options[int(np.argmax(ll))]] for it, ll in zip(items, lls)]
        else:
            outs = engine.generate(requests_for(engine, items, mode, dec, seed, chat))
        res, mode_preds = score_mode(bench, items, mode, outs, lls, seed)
        preds += mode_preds
        res["seconds"] = round(time.time() - t0, 2)
        results[mode] = res
    return results, preds


def score_mode(bench: Benchmark, items: list[EvalItem], mode: str, outs: list[list[str]], lls=None, seed: int = 0
               ) -> tuple[dict, list[dict]]:
    """A mode's result and predictions from the model's outputs (the engine's answers, or recorded ones: rescoring
    applies the current extraction and scoring rules to an earlier evaluation's outputs)."""
    key = "direct" if mode == "direct" else "cot"
    vals, extra, other_vote, form = [], [], [], []
    preds = []
    for n, (it, o) in enumerate(zip(items, outs)):
        answers = [canonical(it, t, key) for t in o]
        final = majority_vote(answers) if mode == "cot_sc" else answers[0]
        sc = score(it, final)
        vals.append(sc["score"])
        if "f1" in sc:
            extra.append(sc["f1"])
        if mode == "cot_sc":  # lm-eval's rule: samples without an answer vote "[invalid]"
            other_vote.append(score(it, majority_vote(answers, invalid_votes=True))["score"])
        ok = answer_form_ok(final, it.golds)
        form.append(ok)
        pred = {"id": it.id, "benchmark": bench.name, "mode": mode, "group": it.group, "outputs": o,
                "answers": answers, "answer": final, "golds": it.golds, **sc, "answer_form_ok": ok}
        if lls is not None:  # each option's log-likelihood, in the item's option order
            pred["option_logliks"] = [round(float(x), 4) for x in lls[n]]
        preds.append(pred)
    res = {**aggregate(items, vals, bench.aggregate, seed), "aggregate": bench.aggregate}
    if extra:  # SQuAD F1 beside exact match, aggregated the same way (TyDiQA: macro over languages)
        f1_agg = aggregate(items, extra, bench.aggregate, seed)
        res.update(f1=f1_agg["score"], f1_ci95=f1_agg["ci95"], f1_per_group=f1_agg["per_group"])
    if other_vote:
        res["score_invalid_votes"] = aggregate(items, other_vote, bench.aggregate, seed)["score"]
    # format vs skill: answers that are empty (no answer marker; a stop string as the first tokens) or not in the
    # golds' form ("Yes\nB: No" for "Yes", a word for a number), in % of items
    res["no_answer_pct"] = round(100 * float(np.mean([not p["answer"].strip() for p in preds])), 2) if preds else 0.0
    res["unparsed_pct"] = round(100 * (1 - float(np.mean(form))), 2) if form else 0.0
    res["normalized"] = round(normalized_score(res["score"], res["random"]), 3)
    return res, preds


def results_table(results: dict) -> str:
    def row(b, m, r):
        if r.get("lower_is_better") or r.get("descriptive"):  # toxicity, response measures: no random baseline
            name = m + (" (lower is better)" if r.get("lower_is_better") else "")
            return [b, name, f"{r['score']:.1f}", f"{r['ci95'][0]:.1f}–{r['ci95'][1]:.1f}", "–", "–", r["n"], "–"]
        return [b, m, f"{r['score']:.1f}", f"{r['ci95'][0]:.1f}–{r['ci95'][1]:.1f}", f"{r['random']:.1f}",
                f"{r['normalized']:.1f}", r["n"]] + ([f"{r['unparsed_pct']:.1f}"] if "unparsed_pct" in r else ["–"])
    rows = [row(b, m, r) for b, modes in results["benchmarks"].items() for m, r in modes.items()]
    return markdown_table(["benchmark", "prompting", "score", "95% CI", "random", "normalized", "n", "unparsed %"], rows) + \
        "\n" + average_line(paper_normalized_average(results["benchmarks"])) + "\n"


def average_line(paper: dict) -> str:
    """The paper's normalized average in words: its value, which of the six entries it covers, what is not in it."""
    if paper["value"] is None:
        return "Normalized average: none of the paper's six entries (MMLU, BBH direct/CoT, TyDiQA, MGSM) evaluated."
    text = f"Normalized average (the paper's six entries): **{paper['value']:.2f}**, {paper['label']}"
    if paper["missing"]:
        text += f"; missing: {', '.join(paper['missing'])}"
    if paper["others"]:
        text += f". Reported beside it, not in it: {', '.join(paper['others'])}"
    return text + "."


# what `flanlab eval --tasks NAME` runs for a benchmark named on the command line: the paper's protocol, as
# lm-evaluation-harness users know it (MMLU ranked by log-likelihood of the letter, MGSM and GSM8K with CoT)
COMMAND_LINE_BENCHMARKS = {"mmlu": {"mc_scoring": "loglik"}, "bbh": {}, "tydiqa": {}, "mgsm": {"modes": ["cot"]},
                           "gsm8k": {"modes": ["cot"]}, "realtoxicityprompts": {}}


def command_line_benchmarks(names: list[str], shots: int | None, modes: list[str] | None,
                            limit: int | None) -> list[dict]:
    """Benchmark entries for `--tasks a,b` (each with the paper's shots and protocol unless --shots/--modes say)."""
    from ..config import did_you_mean
    out = []
    for name in names:
        if name not in COMMAND_LINE_BENCHMARKS:
            raise FlanlabError(f"unknown benchmark '{name}'{did_you_mean(name, COMMAND_LINE_BENCHMARKS)} (flanlab "
                               "tasks list --benchmarks names them)", field="--tasks")
        entry = {"name": name, **COMMAND_LINE_BENCHMARKS[name]}
        out.append({**entry, **({"shots": shots} if shots is not None else {}),
                    **({"modes": modes} if modes else {}), **({"limit": limit} if limit else {})})
    return out


def load_eval_config(path: Path | None, checkpoint: str | None = None, output: str | Path | None = None,
                     overrides: list[str] | None = None, *, tasks: list[str] | None = None, shots: int | None = None,
                     modes: list[str] | None = None, limit: int | None = None) -> EvalConfig:
    """The eval config of a file (top level or under 'eval:'; None: the defaults), validated, then the command line
    on top: key=value overrides, --tasks (replaces the benchmarks), --shots/--modes/--limit (every benchmark), the
    checkpoint and the output directory."""
    from ..config import apply_overrides, read_section, validate
    data, sec = read_section(path, "eval") if path is not None else ({}, "")
    cfg = validate(EvalConfig, data, file=path or "<command line>", prefix=sec)
    if overrides:
        cfg = validate(EvalConfig, apply_overrides(cfg.model_dump(), overrides), file="<command line>")
    d = cfg.model_dump()
    if tasks:
        d["benchmarks"] = command_line_benchmarks(tasks, shots, modes, limit)
    elif shots is not None or modes or limit:
        d["benchmarks"] = [{**b, **({"shots": shots} if shots is not None else {}), **({"modes": modes} if modes else {}),
                            **({"limit": limit} if limit else {})} for b in d["benchmarks"]]
    if checkpoint:
        d["checkpoint"], d["preset"] = checkpoint, None
    if output:
        d["output"] = str(output)
    cfg = validate(EvalConfig, d, file="<command line>")
    if not cfg.checkpoint and not cfg.preset and path is None:
        raise FlanlabError("no model: give -c MODEL (a checkpoint directory, a .gguf file or a packaged model's name, "
                           "e.g. smollm2-135m) or a config", field="--checkpoint")
    return cfg


def load_eval_model(cfg: EvalConfig):
    """(model, tokenizer, fingerprint) for the config's checkpoint (resolved: directory, .gguf, packaged name)
    or untrained preset."""
    from ..models.build import ModelSpec, build_model
    from ..models.checkpoint import resolve_checkpoint
    if cfg.checkpoint:
        path = resolve_checkpoint(cfg.checkpoint, "checkpoint")  # once: a .gguf is hashed to find its conversion
        model, tok = build_model(ModelSpec(checkpoint=path, preset=None), seed=cfg.seed, field="checkpoint")
        fp = model_fingerprint(path)
    elif cfg.preset:
        model, tok = build_model(ModelSpec(preset=cfg.preset), seed=cfg.seed)
        fp = model_fingerprint(None, model)
    else:
        raise FlanlabError("set 'checkpoint' (a model directory, .gguf file or packaged model name) or 'preset'",
                           field="checkpoint")
    from ..models.device import select_device
    model.config.use_cache = True
    return model.to(select_device(cfg.device)), tok, fp


def build_scorers(cfg: EvalConfig, file: object) -> dict:
    """benchmark index -> its toxicity scorer, for the benchmarks that score generations."""
    from .toxicity import build_scorer
    scorers = {}
    for i, spec in enumerate(cfg.benchmarks):
        if spec.name == "realtoxicityprompts":
            try:
                scorers[i] = build_scorer(spec.scorer, spec.scorer_label, spec.perspective_key_env,
                                          spec.perspective_qps)
            except FlanlabError as e:
                raise FlanlabError(e.message, file=file, field=f"benchmarks[{i}].{e.field or 'scorer'}") from None
    return scorers


def load_benchmarks(cfg: EvalConfig, file: object, base: Path | None, procs: Processes | None = None) -> list:
    """All benchmarks' data, loaded (and validated) before any model work. Several processes: process 0 first, so a
    hub download is written once; the others then read its files (or stop with its error instead of waiting)."""
    def load():
        benches = []
        for i, spec in enumerate(cfg.benchmarks):
            try:
                benches.append((spec, load_benchmark(spec, cfg.registry, base, i, cfg.hub_cache)))
            except FlanlabError as e:
                if e.file is None:
                    e.file = str(file)
                raise
        return benches
    if procs is None or procs.world == 1:
        return load()
    benches, error = None, None
    if procs.rank == 0:
        try:
            benches = load()
        except FlanlabError as e:
            error = e
    failed = procs.gather(str(error) if error else None)[0]
    if error is not None:
        raise error
    if failed:
        raise FlanlabError(f"process 0 could not load the benchmarks: {failed}", file=file)
    return benches if benches is not None else load()


@dataclass(frozen=True)
class EvalResult:
    """What the eval stage made: results.json's record and predictions.jsonl's rows (both written under `output` by
    process 0). `cached`: every answer came from the answer cache, whose keys are the model's fingerprint and the
    request, so no forward pass ran."""
    output: Path
    results: dict
    predictions: list[dict]

    @property
    def cached(self) -> bool:
        engine = self.results.get("engine", {})
        return engine.get("forward_calls") == 0 and engine.get("cache_hits", 0) > 0

    @property
    def normalized_average(self) -> float | None:
        return self.results["normalized_average"]


def run_eval(cfg: EvalConfig, *, file: object = "<eval config>", base: Path | None = None, model=None, tok=None,
             progress=None, stage: str = "eval") -> EvalResult:
    """See _run_eval; process 0 holds the output's lock (a second process on the same output refuses)."""
    with output_lock(cfg.output, enabled=int(os.environ.get("RANK", "0")) == 0):
        return _run_eval(cfg, file=file, base=base, model=model, tok=tok, progress=progress, stage=stage)


def _evaluate(engine: Engine, cfg: EvalConfig, i: int, spec, bench: Benchmark, scorer, label: str, progress):
    """(results by mode, predictions) of one benchmark, by the protocol its name asks for."""
    if spec.name == "realtoxicityprompts":
        from .rtp import run_rtp
        return run_rtp(engine, bench, spec.sampling(), scorer, Path(cfg.output), cfg.seed, label, progress)
    if spec.name == "generation":
        from .generation import run_generation
        return run_generation(engine, bench, spec.sampling(), cfg.seed, cfg.chat_template, label, progress)
    return run_benchmark(engine, bench, spec.modes, cfg.decoding, spec.mc_scoring, cfg.seed, where=f"benchmarks[{i}]",
                         chat=cfg.chat_template, progress=progress, label=label)


def _run_eval(cfg: EvalConfig, *, file: object, base: Path | None, model, tok, progress, stage: str) -> EvalResult:
    """Evaluate; `progress` (an EvalProgress) reports requests done per benchmark and mode, labelled [stage].
    Under torchrun (`flanlab eval --nproc N`) every process runs this: the engine deals batches out to them and
    gathers the answers, so each ends with all results; process 0 writes the files."""
    threads = configure_threads(cfg.threads)
    procs = Processes()
    out = Path(cfg.output)
    if procs.rank != 0:
        progress = None
    benches = load_benchmarks(cfg, file, base, procs)
    if progress is not None:  # where every benchmark's files came from (also in results.json: data)
        from ..data.resolve import describe
        for spec, bench in benches:
            if bench.source is not None:
                progress.log(f"[{stage}] data {spec.label or spec.name}: {describe(bench.source)}")
    scorers = build_scorers(cfg, file)  # before any model work: a scorer that cannot run says so now
    if model is None:
        model, tok, fp = load_eval_model(cfg)
    else:
        fp = model_fingerprint(None, model)
    out.mkdir(parents=True, exist_ok=True)  # only once data and model are there: a failed start leaves nothing
    precision = usable_precision(cfg.precision, next(model.parameters()).device,
                                 progress.log if progress is not None else lambda m: None, "eval")
    engine = Engine(model, tok, fingerprint=fp, cache_path=out / "cache.jsonl", batch_tokens=cfg.batch_tokens,
                    max_prompt_len=cfg.max_prompt_len, max_batch_rows=cfg.max_batch_rows, processes=procs,
                    precision=precision)
    results = {"checkpoint": cfg.checkpoint, "preset": cfg.preset, "fingerprint": fp, "code": code_version(),
               "threads": {**threading_record(), "torch": threads, **malloc_record()}, "precision": precision,
               "benchmarks": {}, "data": {}, "notes": {}}
    all_preds = []
    t0 = time.time()
    for i, (spec, bench) in enumerate(benches):
        label = spec.label or spec.name
        r, p = _evaluate(engine, cfg, i, spec, bench, scorers.get(i), f"[{stage}] {label}", progress)
        for res in r.values():  # what the paper's normalized average needs to recognise its six entries
            res.update(benchmark=spec.name, shots=spec.shots if spec.shots is not None else DEFAULT_SHOTS[spec.name])
        results["benchmarks"][label] = r
        if bench.source is not None:
            results["data"][label] = bench.source
        if bench.notes:
            results["notes"][label] = bench.notes
        all_preds += [{**x, "benchmark": label} for x in p]
    engine.cache.close()
    if progress is not None:
        progress.finish()
    paper = paper_normalized_average(results["benchmarks"])
    results["normalized_average"] = paper["value"]
    results["normalized_average_of"] = paper
    results["seconds"] = round(time.time() - t0, 2)
    stats = procs.gather({**engine.stats, "cache_hits": engine.cache.hits})  # work done, summed over processes
    keys = sorted({k for s in stats for k in s})  # phases a process did not run are 0 there
    results["engine"] = {k: round(sum(s.get(k, 0) for s in stats), 2) for k in keys}
    if procs.world > 1:  # how the work was shared
        results["engine"]["per_process"] = [{k: s[k] for k in ("forward_calls", "prompt_tokens", "generated_tokens")}
                                            for s in stats]
    if procs.rank != 0:
        return EvalResult(out, results, all_preds)
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in all_preds))
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    lm_eval = to_lm_eval(results, all_preds, f"pretrained={cfg.checkpoint or cfg.preset}")
    atomic_write_text(out / "results_lm_eval.json", json.dumps(lm_eval, indent=1, ensure_ascii=False))
    atomic_write_text(out / "results.md", results_table(results))
    return EvalResult(out, results, all_preds)
