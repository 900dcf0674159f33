"""The Flan 2022 collection as the paper and FLAN v2 define it: submixtures, their task counts, per-task caps
(examples-proportional mixing with a maximum per task) and mixing rates.

A mix config maps its collections onto these submixtures (`collections[i].flan_submixture`); a mapped collection
takes the paper's cap and rate unless it sets its own, rates are renormalised over the collections present, and
the manifest reports coverage: tasks present vs the paper's, and the submixtures no source provides.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Submixture:
    name: str
    paper_tasks: int | None  # tasks in the paper's count (Dialog is outside the 1,836)
    cap: int  # maximum examples per task
    rate: float  # share of the mixture
    description: str


FLAN_2022 = {s.name: s for s in (
    Submixture("muffin", 80, 30_000, 0.40, "Flan 2021 (Muffin): 62 datasets with Flan templates, plus additions"),
    Submixture("t0sf", 193, 20_000, 0.32, "T0-SF: T0's promptsource tasks not already in Muffin"),
    Submixture("cot", 9, 100_000, 0.20, "chain-of-thought: 9 datasets with human rationales"),
    Submixture("niv2", 1554, 5_000, 0.05, "Super-Natural Instructions v2"),
    Submixture("dialog", None, 200_000, 0.03, "dialog tasks (Flan 2022 collection)"),
)}
PAPER_TASKS = sum(s.paper_tasks or 0 for s in FLAN_2022.values())  # 1,836


def unknown_submixture(name: str) -> str:
    import difflib
    near = difflib.get_close_matches(name, list(FLAN_2022), n=1, cutoff=0.5)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"unknown Flan 2022 submixture '{name}'; {hint}known: {', '.join(FLAN_2022)}"


def coverage(plan: dict, collections: list, per_collection: dict) -> dict:
    """Per Flan submixture: the paper's tasks and rate vs the tasks present, examples written and rate used;
    submixtures no collection provides are listed as missing."""
    weights = {c.name: c.weight for c in collections}
    total_w = sum(weights.values())
    tasks_of: dict[str, int] = {}
    for p in plan["tasks"]:
        if p["n"]:
            tasks_of[p["collection"]] = tasks_of.get(p["collection"], 0) + 1
    out, present = {}, set()
    for c in collections:
        sub = FLAN_2022.get(c.flan_submixture) if c.flan_submixture else None
        present.add(c.flan_submixture)
        entry = {"collection": c.name, "tasks_present": tasks_of.get(c.name, 0), "cap": c.cap,
                 "rate_used": round(c.weight / total_w, 4), "examples": per_collection.get(c.name, 0)}
        if sub:
            entry.update(paper_tasks=sub.paper_tasks, paper_rate=sub.rate, paper_cap=sub.cap)
        out.setdefault(c.flan_submixture or f"extra:{c.name}", []).append(entry)
    missing = [{"submixture": s.name, "paper_tasks": s.paper_tasks, "paper_rate": s.rate}
               for s in FLAN_2022.values() if s.name not in present]
    present_tasks = sum(e["tasks_present"] for k, es in out.items() if not k.startswith("extra:") for e in es)
    return {"submixtures": out, "missing": missing, "paper_tasks": PAPER_TASKS,
            "flan_tasks_present": present_tasks}
