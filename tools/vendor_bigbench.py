"""Copy the BIG-bench JSON tasks that flanlab's shipped configs and tests name into the package.

Why: PyPI no longer serves bigbench 1.0.0 (its index lists only 0.0.1 and the 1.0.0 file answers 403, checked
2026-12-04), so a fresh `make install` cannot get it. These files are copied byte for byte from an installed
bigbench 1.0.0 (sdist sha256 1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2), Apache-2.0.

    python tools/vendor_bigbench.py [--source <bigbench/benchmark_tasks>]

Writes src/flanlab/tasks/data/bigbench/<task>[/<subtask>]/task.json and MANIFEST.tsv (path, bytes, sha256).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import shutil
from pathlib import Path

# the training tasks of the shipped Flan configs and the packages-only job, the BBH source tasks they evaluate on,
# and the one the tests name; every task.json under each directory (parent and subtasks) is copied
TASKS = """analogical_similarity anachronisms cause_and_effect common_morpheme conceptual_combinations emoji_movie
english_proverbs entailed_polarity epistemic_reasoning fantasy_reasoning figure_of_speech_detection general_knowledge
human_organs_senses identify_odd_metaphor implicatures irony_identification logical_args metaphor_understanding
misconceptions moral_permissibility novel_concepts odd_one_out physical_intuition presuppositions_as_nli riddle_sense
similarities_abstraction understanding_fables winowhy
navigate sports_understanding date_understanding logical_deduction
arithmetic/1_digit_addition""".split()

DEST = Path(__file__).resolve().parent.parent / "src" / "flanlab" / "tasks" / "data" / "bigbench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="bigbench/benchmark_tasks directory (default: the installed package's)")
    args = ap.parse_args()
    src = Path(args.source) if args.source else Path(str(importlib.resources.files("bigbench") / "benchmark_tasks"))
    rows, total = [], 0
    for name in TASKS:
        for f in sorted((src / name).rglob("task.json")):
            rel = f.relative_to(src)
            out = DEST / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
            data = out.read_bytes()
            total += len(data)
            rows.append(f"{rel.as_posix()}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")
    (DEST / "MANIFEST.tsv").write_text("path\tbytes\tsha256\n" + "\n".join(rows) + "\n")
    print(f"{len(rows)} task.json files, {total / 1e6:.1f} MB -> {DEST}")


if __name__ == "__main__":
    main()
