"""The Flan 2022 collection as the paper and FLAN v2 define it: submixtures, their task counts, per-task caps
(examples-proportional mixing with a maximum per task) and mixing rates.

A mix config maps its collections onto these submixtures (`collections[i].flan_submixture`); a mapped collection
takes the paper's cap and rate unless it sets its own, rates are renormalised over the collections present, and
the manifest reports coverage: tasks present vs the paper's, name by name against Flan's task list when the config
names it (`flan_task_list`), and the submixtures no source provides.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tasks.flan_list import FlanTaskList


@dataclass(frozen=True)
class Submixture:
    name: str
    paper_tasks: int | None  # tasks in the paper's count (Dialog is outside the 1,836)
    cap: int  # maximum examples per task
    rate: float  # share of the mixture
    description: str


# rates: FLAN v2's final mixture, `flan2022_submix` in google-research/FLAN flan/v2/run_example.py
FLAN_2022 = {s.name: s for s in (
    Submixture("muffin", 80, 30_000, 0.40, "Flan 2021 (Muffin): 62 datasets with Flan templates, plus additions"),
    Submixture("t0sf", 193, 20_000, 0.32, "T0-SF: T0's promptsource tasks not already in Muffin"),
    Submixture("niv2", 1554, 5_000, 0.20, "Super-Natural Instructions v2"),
    Submixture("cot", 9, 100_000, 0.05, "chain-of-thought: 9 datasets with human rationales"),
    Submixture("dialog", None, 200_000, 0.03, "dialog tasks (Flan 2022 collection)"),
)}
PAPER_TASKS = sum(s.paper_tasks or 0 for s in FLAN_2022.values())  # 1,836
# our dataset names -> the task list's, where they differ (Muffin datasets read from T0's rendering of them)
LIST_ALIASES = {"ag_news": "ag_news_subset", "imdb": "imdb_reviews", "paws_labeled_final": "paws_wiki"}
COT_PREFIXES = ("cot_", "stream_")  # the list's CoT datasets: cot_gsm8k, stream_aqua, ...


def unknown_submixture(name: str) -> str:
    from ..config import did_you_mean
    return f"unknown Flan 2022 submixture '{name}'{did_you_mean(name, FLAN_2022, cutoff=0.5)}"


def list_name(unit: str, names: set[str]) -> str | None:
    """The task list's name for one of our tasks' datasets (or NIV2 task / T0 template), None if it has none."""
    bare = next((unit[len(p):] for p in COT_PREFIXES if unit.startswith(p)), unit)  # cot_aqua <-> stream_aqua
    for cand in (unit, LIST_ALIASES.get(unit), *(p + bare for p in COT_PREFIXES)):
        if cand in names:
            return cand
    return None


def against_list(units: list[str], names: tuple[str, ...]) -> dict:
    """Present / missing / extra, by name: `units` are what the mixture holds, `names` the paper's list."""
    wanted = set(names)
    hit = {u: list_name(u, wanted) for u in units}
    present = {h for h in hit.values() if h}
    return {"list_tasks": len(names), "present": len(present), "missing": [n for n in names if n not in present],
            "extra": sorted(u for u, h in hit.items() if h is None)}


def _instances_note(tasks: list) -> dict:
    """How much of each task is here vs upstream (NIV2: one worked example per task, millions upstream)."""
    sizes = [t.size("train") for t in tasks]
    upstream = [t.dataset.upstream_size for t in tasks if t.dataset.upstream_size]
    if not upstream:
        return {}
    per = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
    return {"instances_here": sum(sizes), "instances_upstream": sum(upstream),
            "note": f"instances per task: {per} (upstream: {sum(upstream):,} in all, "
                    f"median {sorted(upstream)[len(upstream) // 2]:,} per task)"}


def coverage(plan: dict, collections: list, per_collection: dict, per_task: dict,
             flan_list: FlanTaskList | None = None) -> dict:
    """Per Flan submixture: the paper's tasks and rate vs the tasks present (written at least once), examples
    written, the rate used and the share of the mixture; with the task list, present / missing / extra by name.
    Submixtures no collection provides are listed as missing."""
    weights = {c.name: c.weight for c in collections}
    total_w, written = sum(weights.values()), sum(per_collection.values())
    tasks_of: dict[str, list] = {}
    for p in plan["tasks"]:
        if per_task.get(p["task"].name):
            tasks_of.setdefault(p["collection"], []).append(p["task"])
    excluded: dict[str, dict[str, int]] = {}
    for e in plan["excluded"]:
        per = excluded.setdefault(e.get("collection", ""), {})
        per[e["reason"]] = per.get(e["reason"], 0) + 1
    planned = {p["task"].name for p in plan["tasks"] if p["n"]}
    out, present = {}, set()
    for c in collections:
        sub = FLAN_2022.get(c.flan_submixture) if c.flan_submixture else None
        present.add(c.flan_submixture)
        tasks = tasks_of.get(c.name, [])
        entry = {"collection": c.name, "tasks_present": len(tasks), "cap": c.cap,
                 "rate_used": round(c.weight / total_w, 4), "examples": per_collection.get(c.name, 0),
                 "share": round(per_collection.get(c.name, 0) / written, 4) if written else 0.0,
                 "excluded": excluded.get(c.name, {}),
                 "dropped_by_decontamination": sorted(
                     p["task"].name for p in plan["tasks"]
                     if p["collection"] == c.name and p["task"].name in planned and not per_task.get(p["task"].name)),
                 **_instances_note(tasks)}
        if sub:
            entry.update(paper_tasks=sub.paper_tasks, paper_rate=sub.rate, paper_cap=sub.cap)
            if flan_list is not None:
                entry["by_name"] = against_list([t.dataset.name for t in tasks], flan_list.names(sub.name))
        out.setdefault(c.flan_submixture or f"extra:{c.name}", []).append(entry)
    missing = [{"submixture": s.name, "paper_tasks": s.paper_tasks, "paper_rate": s.rate,
                **({"list_tasks": len(flan_list.names(s.name))} if flan_list else {})}
               for s in FLAN_2022.values() if s.name not in present]
    flan = [e for k, es in out.items() if not k.startswith("extra:") for e in es]
    res = {"submixtures": out, "missing": missing, "paper_tasks": PAPER_TASKS,
           "flan_tasks_present": sum(e["tasks_present"] for e in flan)}
    if flan_list is not None:
        res["task_list"] = flan_list.path
        res["list_tasks"] = sum(len(flan_list.names(s)) for s, sub in FLAN_2022.items() if sub.paper_tasks)
        res["flan_tasks_present_by_name"] = sum(e["by_name"]["present"] for e in flan if "by_name" in e)
    return res
