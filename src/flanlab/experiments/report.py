"""`flanlab report`: markdown + HTML report with plots like the paper's (held-out score vs number of
finetuning tasks, vs model parameters; CoT and self-consistency effects) and paired-bootstrap
confidence intervals for each effect."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from ..errors import FlanlabError
from ..evaluate.scoring import bootstrap_ci
from ..utils import atomic_write_text, markdown_table


def _scores(cell_dir: Path) -> dict:
    """(benchmark, mode) -> {item id: score} from a run's eval_after/predictions.jsonl."""
    f = cell_dir / "eval_after" / "predictions.jsonl"
    if not f.is_file():
        raise FlanlabError("sweep cell has no evaluation results (was the sweep interrupted?)", file=f)
    out: dict = {}
    for line in f.read_text().splitlines():
        p = json.loads(line)
        out.setdefault((p["benchmark"], p["mode"]), {})[p["id"]] = p["score"]
    return out


def paired_diff(a: dict, b: dict, n: int = 2000, seed: int = 0) -> dict:
    """Mean of b - a over shared items (in points), with a 95% paired bootstrap CI."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return {"diff": float("nan"), "ci95": [float("nan")] * 2, "n": 0}
    d = np.array([b[i] - a[i] for i in ids]) * 100
    lo, hi = bootstrap_ci(d, n=n, seed=seed)
    return {"diff": round(float(d.mean()), 2), "ci95": [round(float(lo), 2), round(float(hi), 2)], "n": len(ids)}


def _verdict(e: dict) -> str:
    lo, hi = e["ci95"]
    if lo > 0:
        return "yes (CI above 0)"
    if hi < 0:
        return "no: reversed (CI below 0)"
    return "not shown (CI includes 0)"


def effects(sweep_dir: Path, rows: list[dict]) -> list[dict]:
    cells = {(r["num_tasks"], r["preset"], r["cot_share"], r["seed"]): r for r in rows}
    scores = {k: _scores(sweep_dir / r["cell"]) for k, r in cells.items()}
    tasks = sorted({k[0] for k in cells})
    presets = sorted({k[1] for k in cells}, key=lambda p: next(r["params"] for r in rows if r["preset"] == p))
    shares = sorted({k[2] for k in cells})
    seeds = sorted({k[3] for k in cells})
    s0, top_share, top_t, big = seeds[0], shares[-1], tasks[-1], presets[-1]
    out = []

    def add(claim, bench, mode, ka, kb, mode_b=None):
        if ka in scores and kb in scores and (bench, mode) in scores[ka] and (bench, mode_b or mode) in scores[kb]:
            e = paired_diff(scores[ka][(bench, mode)], scores[kb][(bench, mode_b or mode)])
            out.append({"claim": claim, "eval": bench, **e, "verdict": _verdict(e)})
    for p in presets:  # every claim is tested in every cell setting, not only where it holds
        for sh in shares:
            for mode in ("direct", "cot"):
                add(f"held-out {mode} rises with number of tasks ({tasks[0]} -> {top_t} tasks, {p}, CoT share {sh:g})",
                    "held_out", mode, (tasks[0], p, sh, s0), (top_t, p, sh, s0))
    if len(presets) > 1:
        for bench in ("held_out", "held_in"):
            for sh in shares:
                add(f"{bench} direct rises with model size ({presets[0]} -> {big}, {top_t} tasks, CoT share {sh:g})",
                    bench, "direct", (top_t, presets[0], sh, s0), (top_t, big, sh, s0))
    for bench in ("held_in", "held_out"):
        for mode in ("cot", "cot_sc"):
            add(f"{bench}: {mode} score with CoT data (share {shares[0]:g} -> {top_share:g}; {big}, {top_t} tasks)",
                bench, mode, (top_t, big, shares[0], s0), (top_t, big, top_share, s0))
        for sh in shares:
            add(f"{bench}: CoT prompting minus direct, CoT share {sh:g} ({big}, {top_t} tasks)", bench, "direct",
                (top_t, big, sh, s0), (top_t, big, sh, s0), mode_b="cot")
        add(f"{bench}: self-consistency minus greedy CoT ({big}, {top_t} tasks, CoT share {top_share:g})", bench, "cot",
            (top_t, big, top_share, s0), (top_t, big, top_share, s0), mode_b="cot_sc")
    return out


def _log_axis(ax, ticks, labels, xlabel: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlabel(xlabel)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # a legend with nothing to name warns and shows an empty box
        ax.legend(fontsize=8)


def _save(fig, f: Path, files: list[Path]) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)


def _plot(rows: list[dict], path: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    shares = sorted({r["cot_share"] for r in rows})
    top = shares[-1]
    presets = sorted({r["preset"] for r in rows}, key=lambda p: next(r["params"] for r in rows if r["preset"] == p))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, mode in zip(axes, ("direct", "cot")):
        for p in presets:
            rs = sorted((r for r in rows if (r["preset"], r["cot_share"], r["seed"]) == (p, top, rows[0]["seed"])),
                        key=lambda r: r["num_tasks"])
            if not rs or mode not in rs[0]["scores"].get("held_out", {}):
                continue
            x = [r["num_tasks"] for r in rs]
            y = [r["scores"]["held_out"][mode]["score"] for r in rs]
            lo = [y_ - r["scores"]["held_out"][mode]["ci95"][0] for y_, r in zip(y, rs)]
            hi = [r["scores"]["held_out"][mode]["ci95"][1] - y_ for y_, r in zip(y, rs)]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=f"{p} ({rs[0]['params'] / 1e6:.1f}M)")
        ticks = sorted({r["num_tasks"] for r in rows})
        _log_axis(ax, ticks, [str(t) for t in ticks], "number of finetuning tasks")
        ax.set_ylabel(f"held-out score, {mode} (%)")
        ax.set_title(f"Held-out ({mode}) vs number of tasks")
        _legend(ax)
    _save(fig, path / "score_vs_tasks.png", files)
    fig, ax = plt.subplots(figsize=(5, 4))
    for n in sorted({r["num_tasks"] for r in rows}):
        rs = sorted((r for r in rows if r["num_tasks"] == n and r["cot_share"] == top and r["seed"] == rows[0]["seed"]),
                    key=lambda r: r["params"])
        if rs and "held_out" in rs[0]["scores"]:
            ax.plot([r["params"] for r in rs], [r["scores"]["held_out"]["direct"]["score"] for r in rs], marker="o",
                    label=f"{n} tasks")
    ticks = sorted({r["params"] for r in rows})
    _log_axis(ax, ticks, [f"{t / 1e6:.2g}M" for t in ticks], "parameters")
    ax.set_ylabel("held-out score, direct (%)")
    ax.set_title("Held-out vs model size")
    _legend(ax)
    _save(fig, path / "score_vs_params.png", files)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    big = presets[-1]
    tmax = max(r["num_tasks"] for r in rows)
    width = 0.25
    rs = [r for r in rows if r["preset"] == big and r["num_tasks"] == tmax and r["seed"] == rows[0]["seed"]]
    rs.sort(key=lambda r: r["cot_share"])
    xs = np.arange(len(rs))
    for ax, bench in zip(axes, ("held_in", "held_out")):
        for j, mode in enumerate(("direct", "cot", "cot_sc")):
            ax.bar(xs + (j - 1) * width, [r["scores"].get(bench, {}).get(mode, {}).get("score", 0) for r in rs], width,
                   label=mode)
        ax.set_xticks(xs, [f"CoT share {r['cot_share']:g}" for r in rs])
        ax.set_ylabel(f"{bench.replace('_', '-')} score (%)")
        ax.set_title(f"{bench.replace('_', '-')}: prompting by CoT data, {big}, {tmax} tasks")
        _legend(ax)
    _save(fig, path / "cot_by_share.png", files)
    return files


def _train_losses(path: Path) -> list[dict]:
    """The training log of a run directory (train/metrics.jsonl); none for an evaluation directory."""
    f = path / "train" / "metrics.jsonl"
    return [r for r in map(json.loads, f.read_text().splitlines()) if "loss" in r] if f.is_file() else []


def _run_plots(data: dict, path: Path) -> list[Path]:
    """before_after.png: each benchmark and prompting before vs after with 95% CIs, and the change with its paired
    CI (from the run's comparison); loss.png: the training loss per logged step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    cmp = data.get("comparison")
    if cmp:
        rows = [r for r in cmp["rows"] if r.get("metric", "score") == "score"]  # F1 rows: in the table, not plotted
        labels = [f"{r['benchmark']}\n{r['mode']}" for r in rows]
        res = data["results"]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
        xs = np.arange(len(rows))
        for j, (stage, name) in enumerate(zip(("before", "after"), cmp["names"])):
            got = [res[stage]["benchmarks"][r["benchmark"]][r["mode"]] for r in rows]
            y = [g["score"] for g in got]
            err = [[v - g["ci95"][0] for v, g in zip(y, got)], [g["ci95"][1] - v for v, g in zip(y, got)]]
            ax.bar(xs + (j - 0.5) * 0.38, y, 0.38, yerr=err, capsize=2, label=name)
        ax.scatter(xs, [r["random"] for r in rows], marker="_", s=300, color="k", label="random", zorder=3)
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_ylabel("score (%), 95% CI")
        ax.set_title("before vs after finetuning")
        _legend(ax)
        ch = [r["change"] for r in rows]
        below = [c - r["ci95"][0] for c, r in zip(ch, rows)]
        above = [r["ci95"][1] - c for c, r in zip(ch, rows)]
        ax2.errorbar(ch, xs, xerr=[below, above], fmt="o", capsize=3)
        ax2.axvline(0, color="k", lw=0.8)
        ax2.set_yticks(xs, labels, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlabel("change (points), paired 95% CI")
        ax2.set_title("after - before")
        _save(fig, path / "before_after.png", files)
    losses = _train_losses(path)
    if losses:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in losses], [r["loss"] for r in losses], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (per target token)")
        ax.set_title("training loss")
        _save(fig, path / "loss.png", files)
    return files


def sweep_table(rows: list[dict]) -> str:
    benches = [b for b in ("held_in", "held_out") if b in rows[0]["scores"]]
    modes = ("direct", "cot", "cot_sc")
    header = ["tasks", "model", "params", "CoT share", "loss", *(f"{b} {m}" for b in benches for m in modes)]
    table = []
    for r in sorted(rows, key=lambda r: (r["params"], r["num_tasks"], r["cot_share"], r["seed"])):
        cells = [f"{r['scores'][b][m]['score']:.1f}" if m in r["scores"][b] else "" for b in benches for m in modes]
        table.append([r["num_tasks"], r["preset"], f"{r['params'] / 1e6:.2f}M", f"{r['cot_share']:g}",
                      f"{r['final_loss']:.3f}", *cells])
    return markdown_table(header, table)


def report(path: str | Path) -> dict:
    """report.md and a self-contained report.html (plots embedded) for a sweep, a run or one evaluation."""
    path = Path(path)
    if (path / "sweep.json").is_file():
        md, eff, pngs = _sweep_report(path)
    elif (path / "run.json").is_file():
        from .run import run_table
        data = json.loads((path / "run.json").read_text())
        old = data.get("comparison") or {}
        stages = {s: path / f"eval_{s}" / "results.json" for s in ("before", "after")}
        if all(f.is_file() for f in stages.values()):
            # recomputed from the evaluations, so the report carries this code's statistics, not those stored when
            # the run finished (the same resamples and seed; compare.json is rewritten to match) - also for a run
            # without its own baseline whose "before" was evaluated elsewhere and copied into eval_before/
            from .compare import compare, write_comparison
            data["comparison"] = compare(path / "eval_before", path / "eval_after",
                                         names=tuple(old.get("names", ("before", "after"))),
                                         samples=old.get("samples", 2000), seed=old.get("seed", 0))
            write_comparison(data["comparison"], path / "compare.json")
            results = data.setdefault("results", {})
            for s, f in stages.items():
                results.setdefault(s, json.loads(f.read_text()))
        eff, pngs = [], _run_plots(data, path)
        md = ["# flanlab run report", "", run_table(data)]
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] if pngs else []
    elif (path / "results.json").is_file():
        eff, pngs, md = [], [], ["# flanlab evaluation report", "", _evaluation_table(path)]
    else:
        raise FlanlabError("not a run, sweep or evaluation directory (no run.json / sweep.json / results.json)",
                           file=path)
    (path / "report.md").write_text("\n".join(md) + "\n")
    (path / "report.html").write_text(_html(md, path))
    return {"markdown": str(path / "report.md"), "html": str(path / "report.html"), "effects": eff,
            "plots": [str(p) for p in pngs]}


def _sweep_report(path: Path) -> tuple[list[str], list[dict], list[Path]]:
    data = json.loads((path / "sweep.json").read_text())
    rows = data["rows"]
    if not rows:
        raise FlanlabError("sweep has no finished cells", file=path / "sweep.json")
    eff = effects(path, rows)
    pngs = _plot(rows, path)
    md = ["# flanlab scaling report", "", "## Cells (scores in %, exact match)", "", sweep_table(rows),
          "## Effects (paired bootstrap over the same evaluation items, 95% CI, points)", "",
          markdown_table(["claim", "eval", "difference", "95% CI", "n", "shown?"],
                         [[e["claim"], e["eval"], f"{e['diff']:+.2f}", f"[{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]",
                           e["n"], e["verdict"]] for e in eff])]
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs]
    return md, eff, pngs


def _evaluation_table(path: Path) -> str:
    """One evaluation: its average and table, re-derived from results.json (results.md rewritten)."""
    from ..evaluate.harness import results_table
    from ..evaluate.scoring import paper_normalized_average
    res = json.loads((path / "results.json").read_text())
    paper = paper_normalized_average(res["benchmarks"])
    if (res.get("normalized_average"), res.get("normalized_average_of")) != (paper["value"], paper):
        res.update(normalized_average=paper["value"], normalized_average_of=paper)
        atomic_write_text(path / "results.json", json.dumps(res, indent=1, ensure_ascii=False))
    table = results_table(res)
    atomic_write_text(path / "results.md", table)
    return table


def _html(md: list[str], path: Path) -> str:
    """The markdown lines as a page: headings as headings, text as <pre>, plots embedded as base64 PNGs."""
    parts, buf = [], []

    def flush():
        if buf:
            parts.append("<pre>" + html.escape("\n".join(buf)) + "</pre>")
            buf.clear()
    for line in md:
        if line.startswith("!["):
            flush()
            name = line[line.index("(") + 1:-1]
            b64 = base64.b64encode((path / name).read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{b64}" style="max-width:100%">')
        elif line.startswith("#"):
            flush()
            lvl = len(line) - len(line.lstrip("#"))
            parts.append(f"<h{lvl}>{html.escape(line.lstrip('# '))}</h{lvl}>")
        else:
            buf.extend(line.splitlines() or [""])
    flush()
    return ("<!doctype html><meta charset='utf-8'><title>flanlab report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:13px}</style>"
            + "".join(parts))
