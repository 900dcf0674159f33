"""Corrupt and hostile input files: seeded random mutants (byte flips, truncation, inserted bytes - invalid UTF-8,
NUL, quotes, brackets -, deleted/duplicated/swapped lines) of flanlab's YAML configs, task files (YAML + JSONL +
TSV) and benchmark files (MMLU CSV, BBH JSON + CoT prompts, TyDiQA JSON), each loaded the way flanlab loads it.
Outcome per mutant: `loaded` (still valid), `refused` (a FlanlabError naming the file), or `traceback` (any other
exception: the target is 0).

    python benchmarks/fuzz_inputs.py [--mutants 1200] [--seed 0]   -> benchmarks/results/fuzz_inputs.json
tests/test_fuzz.py runs the same harness on a few dozen mutants per kind.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

INSERTS = [b"\xff", b"\x00", b"\xe9", b'"', b"'", b"{", b"}", b"[", b"]", b":", b",", b"\n", b"\t", b"- ", b"&a",
           b"*a", b"!!python/object/apply:os.system ['true']", b"1e999", b"-1", b"null", b"\r"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    op = rng.randrange(7)
    n = len(data)
    if n == 0:
        return rng.choice(INSERTS)
    i = rng.randrange(n)
    if op == 0:  # flip a byte
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if op == 1:  # truncate
        return data[:i]
    if op == 2:  # insert
        return data[:i] + rng.choice(INSERTS) + data[i:]
    if op == 3:  # delete a span
        return data[:i] + data[i + rng.randint(1, 64):]
    lines = data.split(b"\n")
    j, k = rng.randrange(len(lines)), rng.randrange(len(lines))
    if op == 4:  # duplicate a line
        lines.insert(j, lines[k])
    elif op == 5:  # swap two lines
        lines[j], lines[k] = lines[k], lines[j]
    else:  # delete a line
        del lines[j]
    return b"\n".join(lines)


def _config_loader(path: Path):
    """Load a config as the command its header names would (flanlab eval / train / mix / run / sweep; tasks.yaml is
    a task file)."""
    from flanlab.config import read_section, read_yaml, validate
    from flanlab.evaluate.harness import load_eval_config
    from flanlab.mixture import MixConfig
    from flanlab.train.trainer import load_train_config
    command = (ROOT / "examples" / path.name).read_bytes().split(b"\n", 1)[0]  # the unmutated file's header
    if path.name == "tasks.yaml":
        from flanlab.tasks.registry import load_task_file
        return load_task_file(path)
    if b"flanlab sweep" in command:
        from flanlab.experiments.sweep import SweepConfig
        section, prefix = read_section(path, "sweep")
        return validate(SweepConfig, section, file=path, prefix=prefix)
    if b"flanlab eval" in command:
        return load_eval_config(path)
    if b"flanlab train" in command:
        return load_train_config(path)
    if b"flanlab mix" in command:
        section, prefix = read_section(path, "mix")
        return validate(MixConfig, section, file=path, prefix=prefix)
    read_yaml(path)
    from flanlab.cli import _run_config
    return _run_config(path, [])


def _task_loader(path: Path):
    from flanlab.tasks.registry import load_task_file
    tasks = load_task_file(path.parent / "tasks.yaml")
    return [t.size("train") for t in tasks]


def targets(work: Path) -> dict:
    """kind -> (files that may be mutated, loader(mutated file) run on a fresh copy)."""
    from flanlab.evaluate.benchmarks import load_bbh, load_mmlu, load_tydiqa
    out = {}
    configs = sorted(p for p in (ROOT / "examples").glob("*.yaml"))
    out["yaml_config"] = (configs, lambda p: _config_loader(p))
    tdir = work / "tasks_src"
    shutil.copytree(ROOT / "examples", tdir, ignore=shutil.ignore_patterns("*.yaml"))
    shutil.copy(ROOT / "examples" / "tasks.yaml", tdir / "tasks.yaml")
    out["task_files"] = ([tdir / "tasks.yaml", *sorted((tdir / "data").iterdir())], _task_loader)
    if DATA.is_dir():
        mm = work / "mmlu_src"
        for split in ("dev", "test"):
            (mm / split).mkdir(parents=True)
            for s in ("anatomy", "virology"):
                shutil.copy(DATA / "mmlu" / split / f"{s}_{split}.csv", mm / split)
        out["mmlu"] = (sorted(mm.rglob("*.csv")), lambda p: load_mmlu(_root(p, "mmlu_src"), 5, ["anatomy", "virology"]))
        bb = work / "bbh_src"
        (bb / "bbh").mkdir(parents=True)
        (bb / "cot-prompts").mkdir()
        for t in ("navigate", "date_understanding"):
            shutil.copy(DATA / "bbh" / "bbh" / f"{t}.json", bb / "bbh")
            shutil.copy(DATA / "bbh" / "cot-prompts" / f"{t}.txt", bb / "cot-prompts")
        out["bbh"] = (sorted(bb.rglob("*.*")), lambda p: load_bbh(_root(p, "bbh_src"), 3, ["navigate", "date_understanding"]))
        ty = work / "tydiqa_src"
        ty.mkdir()
        full = json.loads((DATA / "tydiqa" / "tydiqa-goldp-v1.1-dev.json").read_text())
        full["data"] = full["data"][:40]
        (ty / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(full, ensure_ascii=False, indent=0))
        out["tydiqa"] = ([ty / "tydiqa-goldp-v1.1-dev.json"], lambda p: load_tydiqa(_root(p, "tydiqa_src"), 1))
    return out


def _root(p: Path, name: str) -> Path:
    while p.name != name:
        p = p.parent
    return p


def fuzz(n: int, seed: int, work: Path, kinds: list[str] | None = None) -> dict:
    """n mutants per kind: {kind: {loaded, refused, traceback, examples of tracebacks}}."""
    from flanlab.errors import FlanlabError
    rng = random.Random(seed)
    result = {}
    for kind, (files, load) in targets(work).items():
        if kinds and kind not in kinds:
            continue
        tally, bad = Counter(), []
        src_root = files[0].parent if kind == "yaml_config" else _root(files[0], files[0].parts[len(work.parts)])
        baseline = []
        for f in (files if kind == "yaml_config" else files[:1]):  # unmutated: everything must load
            try:
                load(f)
            except Exception as e:  # noqa: BLE001
                baseline.append(f"{f.name}: {type(e).__name__}: {str(e)[:120]}")
        for i in range(n):
            case = work / f"case_{kind}"
            shutil.rmtree(case, ignore_errors=True)
            if kind == "yaml_config":
                case.mkdir()
                target_src = rng.choice(files)
                target = case / target_src.name
                shutil.copy(target_src, target)
            else:
                shutil.copytree(src_root, case / src_root.name)
                target_src = rng.choice(files)
                target = case / src_root.name / target_src.relative_to(src_root)
            target.write_bytes(mutate(target.read_bytes(), rng))
            try:
                load(target)
                tally["loaded"] += 1
            except FlanlabError:
                tally["refused"] += 1
            except Exception as e:  # noqa: BLE001 - what this measures
                tally["traceback"] += 1
                if len(bad) < 8:
                    bad.append({"file": target_src.name, "error": f"{type(e).__name__}: {str(e)[:160]}",
                                "where": traceback.extract_tb(e.__traceback__)[-1].filename.split("site-packages/")[-1]
                                + ":" + str(traceback.extract_tb(e.__traceback__)[-1].lineno)})
        result[kind] = {"mutants": n, **{k: tally.get(k, 0) for k in ("loaded", "refused", "traceback")},
                        "baseline_failures": baseline, "tracebacks": bad}
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutants", type=int, default=1200, help="in total, split over the kinds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kinds = 5  # yaml_config, task_files, mmlu, bbh, tydiqa
        res = fuzz(-(-args.mutants // kinds), args.seed, Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"command": "python benchmarks/fuzz_inputs.py " + " ".join(sys.argv[1:]), "code": commit, "kinds": res,
           "total": {k: sum(r[k] for r in res.values()) for k in ("mutants", "loaded", "refused", "traceback")}}
    (ROOT / "benchmarks" / "results" / "fuzz_inputs.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out["total"]), json.dumps({k: {x: v[x] for x in ("loaded", "refused", "traceback")}
                                                for k, v in res.items()}))


if __name__ == "__main__":
    main()
