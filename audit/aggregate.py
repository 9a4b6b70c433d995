"""The leaderboard (paper Tables 4, 5, 6, 8 and Eq. 1), built only from runs whose verdict
allows it.

Input is one row per run: agent, task, rep, status, score (+ scripts_launched, budget_used_s,
budget_s, rule, run_dir when known), read from sealed run directories or from a CSV/Parquet
table. ``accepted`` runs are scored; ``no_score`` runs count as attempts that produced no
score; ``disqualified``, ``incomplete`` and ``tampered`` runs never enter a mean, a best or
Agg, and are listed apart with their rule. Std is the sample std (ddof=1): one run has none.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from onegc.audit import official
from onegc.evidence.attest import Verifier
from onegc.evidence.errors import MissingExtra, OnegcError
from onegc.evidence.integrity import BadRunDir
from onegc.evidence.layout import RunLayout
from onegc.evidence.seal import DB_NAME, MANIFEST_NAME, RESCORE_DIR
from onegc.rules.engine import judge, open_evidence

STATUSES = ("accepted", "no_score", "disqualified", "incomplete", "tampered")
ATTEMPTED = ("accepted", "no_score", "disqualified")  # the N of the success rate n/N
EXCLUDED = ("disqualified", "incomplete", "tampered")
THIN_BELOW = 3  # a cell resting on fewer scored runs is marked thin


@dataclass(frozen=True)
class TaskMeta:
    id: str
    metric: str
    direction: str
    baseline: float
    budget_s: float


@dataclass(frozen=True)
class Standing:
    """A run's place in the table: the verdict's status, its score, the rule that excluded it."""

    status: str
    score: float | None
    rule: str | None = None
    data: str = "unknown"  # real | synthetic | unknown (no result.json: an imported or unscored run)


# -- the one place that knows where verdicts come from ----------------------------------------
def run_verdict(run_dir: Path, verifier: Verifier | None = None) -> Standing:
    """The run's verdict from the rules engine (integrity, Rules 1-9, the official score);
    with a `verifier`, a run whose signatures do not verify is `tampered`."""
    from onegc.audit.cmd_verify import task_direction

    v = judge(run_dir, direction_for=task_direction, verifier=verifier)  # a Verdict (onegc-verdict-1)
    score = v.score.official if v.score else None
    rule = ", ".join(v.disqualified_by) or (v.reasons[0] if v.reasons else None)
    data = official.run_data(run_dir)
    return Standing(v.status, score, rule, data["kind"] if data else "unknown")


def run_status(run_dir: Path) -> tuple[str, float | None]:
    """(status, score) of one run; the one place that knows where verdicts come from."""
    v = run_verdict(run_dir)
    return v.status, v.score


# -- evidence -> per-run facts ----------------------------------------------------------------
def shared_facts(run_dir: Path) -> tuple[int, float | None]:
    """(training scripts launched, seconds of the budget used) of one run, read off the rules'
    own views (training_launches, budget_use): Table 5 and 8 count what W3 and the named
    queries count."""
    con = open_evidence(run_dir, derived=False)
    try:
        launched = con.execute("SELECT count(*) FROM training_launches").fetchone()[0]
        used = con.execute("SELECT used_s FROM budget_use").fetchone()
    finally:
        con.close()
    return launched, (used[0] if used else None)


def run_facts(run_dir: Path) -> dict[str, Any]:
    """agent, task, rep, budget, budget used and scripts launched of one sealed run."""
    label, task, rep = RunLayout(run_dir).identity
    facts: dict[str, Any] = {
        "agent": label,
        "task": task,
        "rep": rep,
        "budget_s": None,
        "budget_used_s": None,
        "scripts_launched": None,
        "run_dir": str(run_dir),
    }
    try:
        con = duckdb.connect(str(run_dir / DB_NAME), read_only=True)
    except duckdb.Error:
        return facts
    try:
        row = con.execute("SELECT label, task, rep, budget_s, deadline_mono FROM run LIMIT 1").fetchone()
    except duckdb.Error:
        row = None
    finally:
        con.close()
    if row is None:
        return facts
    label, task, rep, budget_s, deadline = row
    facts.update(agent=label or facts["agent"], task=task or facts["task"], rep=rep, budget_s=budget_s)
    if deadline is not None:
        try:
            facts["scripts_launched"], facts["budget_used_s"] = shared_facts(run_dir)
        except duckdb.Error:
            pass
    return facts


def find_run_dirs(root: Path) -> list[Path]:
    """Sealed run directories (holding manifest.json) under ``root``, rescore folders aside."""
    if not root.is_dir():
        raise BadRunDir(f"{root}: no such directory")
    found = [p.parent for p in root.rglob(MANIFEST_NAME) if RESCORE_DIR not in p.relative_to(root).parts]
    return sorted(set(found))


def collect_runs(root: Path, verifier: Verifier | None = None) -> pl.DataFrame:
    """One row per run found under ``root`` with its verdict and facts."""
    return collect_runs_at(find_run_dirs(root), verifier)


def collect_runs_at(run_dirs: list[Path], verifier: Verifier | None = None) -> pl.DataFrame:
    """One row per given run directory with its verdict and facts."""
    rows = []
    for run_dir in run_dirs:
        facts = run_facts(run_dir)
        v = run_verdict(run_dir, verifier)
        rows.append({**facts, "status": v.status, "score": v.score, "rule": v.rule, "data": v.data})
    return normalise(pl.DataFrame(rows, schema=RESULT_SCHEMA) if rows else empty_results())


RESULT_SCHEMA = {
    "agent": pl.Utf8,
    "task": pl.Utf8,
    "rep": pl.Int64,
    "status": pl.Utf8,
    "score": pl.Float64,
    "scripts_launched": pl.Float64,
    "budget_used_s": pl.Float64,
    "budget_s": pl.Float64,
    "rule": pl.Utf8,
    "run_dir": pl.Utf8,
    "data": pl.Utf8,
}
DATA_KINDS = ("real", "synthetic", "unknown")  # the order boards are shown in


def empty_results() -> pl.DataFrame:
    return pl.DataFrame(schema=RESULT_SCHEMA)


def normalise(df: pl.DataFrame) -> pl.DataFrame:
    """Check a results table (required columns, known statuses, scores where accepted) and
    give it every optional column."""
    missing = [c for c in ("agent", "task", "rep", "status", "score") if c not in df.columns]
    if missing:
        raise OnegcError(f"results table lacks column(s): {', '.join(missing)}")
    for col, dtype in RESULT_SCHEMA.items():
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(col))
        else:
            df = df.with_columns(pl.col(col).cast(dtype, strict=False))
    df = df.select(list(RESULT_SCHEMA)).with_columns(pl.col("status").str.strip_chars().str.to_lowercase())
    bad = sorted(set(df["status"].to_list()) - set(STATUSES))
    if bad:
        raise OnegcError(f"unknown status(es) {bad}; known: {', '.join(STATUSES)}")
    # a results table without a data column holds published (real) runs; sealed runs always say
    df = df.with_columns(pl.col("data").fill_null("real").str.strip_chars().str.to_lowercase())
    bad = sorted(set(df["data"].to_list()) - set(DATA_KINDS))
    if bad:
        raise OnegcError(f"unknown data kind(s) {bad}; known: {', '.join(DATA_KINDS)}")
    noscore = df.filter((pl.col("status") == "accepted") & pl.col("score").is_null())
    if noscore.height:
        r = noscore.row(0, named=True)
        raise OnegcError(f"accepted run without a score: {r['agent']}/{r['task']}/r{r['rep']}")
    return df


def load_results(path: Path) -> pl.DataFrame:
    """A per-run results table from CSV or Parquet."""
    if not path.is_file():
        raise OnegcError(f"{path}: no such results file")
    df = pl.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pl.read_csv(path)
    return normalise(df)


# -- the tables -----------------------------------------------------------------------------
def improvement(score: float, meta: TaskMeta) -> float:
    """Eq. 1 for one task."""
    d = (score - meta.baseline) / meta.baseline
    return d if meta.direction == "higher" else -d


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def leaderboards(df: pl.DataFrame, tasks: dict[str, TaskMeta], thin_below: int = THIN_BELOW) -> list[dict]:
    """One board per kind of data (real first): synthetic and real runs never share a row,
    a mean or an Agg."""
    kinds = [k for k in DATA_KINDS if k in set(df["data"].to_list())]
    return [leaderboard(df.filter(pl.col("data") == k), tasks, thin_below) for k in kinds]


def leaderboard(df: pl.DataFrame, tasks: dict[str, TaskMeta], thin_below: int = THIN_BELOW) -> dict:
    """All four tables as plain data for runs on one kind of data: ``cells`` (agent x task),
    ``agents`` (Agg, Agg_max, rank), ``excluded`` (runs kept out, with their rule), ``tasks``
    (the columns), ``data`` (real, synthetic or unknown)."""
    data = sorted(set(df["data"].to_list()))
    if len(data) > 1:
        raise ValueError(f"one board holds runs on one kind of data, not {data}: use leaderboards()")
    unknown = sorted(set(df["task"].to_list()) - set(tasks))
    if unknown:
        raise OnegcError(f"unknown task(s) {unknown}; known: {', '.join(tasks)}")
    task_ids = [t for t in tasks if t in set(df["task"].to_list())]
    agents = sorted(set(df["agent"].to_list()))
    cells: list[dict[str, Any]] = []
    for agent in agents:
        for task in task_ids:
            meta = tasks[task]
            sub = df.filter((pl.col("agent") == agent) & (pl.col("task") == task))
            if sub.height == 0:
                continue
            scored = sub.filter(pl.col("status") == "accepted")
            attempted = sub.filter(pl.col("status").is_in(ATTEMPTED))
            values = scored["score"].to_list()
            best = None
            if values:
                best = max(values) if meta.direction == "higher" else min(values)
            scripts = [v for v in scored["scripts_launched"].to_list() if v is not None]
            judged = sub.filter(pl.col("status").is_in(("accepted", "no_score")))  # no dq: Table 8 is a mean
            used = [v for v in judged["budget_used_s"].to_list() if v is not None]
            budgets = [v for v in judged["budget_s"].to_list() if v is not None]
            budget = (sum(budgets) / len(budgets)) if budgets else meta.budget_s
            used_mean = sum(used) / len(used) if used else None
            cells.append(
                {
                    "agent": agent,
                    "task": task,
                    "n_scored": len(values),
                    "n_attempted": attempted.height,
                    "n_no_score": sub.filter(pl.col("status") == "no_score").height,
                    "n_disqualified": sub.filter(pl.col("status") == "disqualified").height,
                    "n_incomplete": sub.filter(pl.col("status") == "incomplete").height,
                    "n_tampered": sub.filter(pl.col("status") == "tampered").height,
                    "mean": sum(values) / len(values) if values else None,
                    "std": _std(values),
                    "best": best,
                    "thin": len(values) < thin_below,
                    "scripts_mean": sum(scripts) / len(scripts) if scripts else None,
                    "budget_min": budget / 60,
                    "used_min": None if used_mean is None else used_mean / 60,
                    "utilisation_pct": None if used_mean is None else 100 * used_mean / budget,
                }
            )
    by_agent: list[dict[str, Any]] = []
    for agent in agents:
        mine = {c["task"]: c for c in cells if c["agent"] == agent}
        means = [improvement(c["mean"], tasks[t]) for t, c in mine.items() if c["mean"] is not None]
        bests = [improvement(c["best"], tasks[t]) for t, c in mine.items() if c["best"] is not None]
        runs_per_task = min((mine[t]["n_attempted"] if t in mine else 0) for t in task_ids)
        scripts = [c["scripts_mean"] for c in mine.values() if c["scripts_mean"] is not None]
        utils = [c["utilisation_pct"] for c in mine.values() if c["utilisation_pct"] is not None]
        used = [c["used_min"] for c in mine.values() if c["used_min"] is not None]
        by_agent.append(
            {
                "agent": agent,
                "agg": sum(means) / len(means) if means else None,
                "agg_max": sum(bests) / len(bests) if bests else None,
                "agg_tasks": len(means),
                "n_tasks": len(task_ids),
                "runs_per_task": runs_per_task,
                "n_scored": sum(c["n_scored"] for c in mine.values()),
                "n_attempted": sum(c["n_attempted"] for c in mine.values()),
                "scripts_per_task": sum(scripts) / len(scripts) if scripts else None,
                "used_min": sum(used) / len(used) if used else None,
                "utilisation_pct": sum(utils) / len(utils) if utils else None,
            }
        )
    _rank(by_agent)
    excluded = (
        df.filter(pl.col("status").is_in(EXCLUDED))
        .sort("agent", "task", "rep")
        .select("agent", "task", "rep", "status", "rule", "run_dir")
        .to_dicts()
    )
    return {
        "data": data[0] if data else "real",
        "tasks": [
            {"id": t, "metric": tasks[t].metric, "direction": tasks[t].direction,
             "baseline": tasks[t].baseline, "budget_min": tasks[t].budget_s / 60}
            for t in task_ids
        ],  # fmt: skip
        "cells": cells,
        "agents": sorted(by_agent, key=lambda a: (a["rank"] is None, a["rank"] or 0, a["agent"])),
        "excluded": excluded,
        "thin_below": thin_below,
    }


def _rank(rows: list[dict[str, Any]]) -> None:
    """Only an agent with an accepted run on every task of the board is ranked (the others get
    rank None, shown as `-`, and sort last); then more runs supersede fewer (paper 3.1), then
    Agg; equal keys share a rank."""
    ranked = [a for a in rows if a["agg"] is not None and a["agg_tasks"] == a["n_tasks"]]
    for a in rows:
        a["rank"] = None

    def key(a: dict[str, Any]) -> tuple[float, float]:
        return (-a["runs_per_task"], -a["agg"])

    ordered = sorted(ranked, key=key)
    for i, a in enumerate(ordered):
        a["rank"] = ordered[i - 1]["rank"] if i and key(ordered[i - 1]) == key(a) else i + 1


def task_metas() -> dict[str, TaskMeta]:
    """Baselines, directions and budgets from the task registry."""
    from onegc.tasks import registry

    return {
        t.id: TaskMeta(t.id, t.metric, t.direction, t.baseline_score, float(t.budget_s))
        for t in registry.list_tasks()
    }


# -- rendering ------------------------------------------------------------------------------
ARROW = {"higher": "↑", "lower": "↓"}


def _f(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _agg(v: float | None) -> str:
    return "–" if v is None else f"{v:+.3f}"


def _best_per_task(board: dict, field_: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in board["tasks"]:
        vals = [c[field_] for c in board["cells"] if c["task"] == t["id"] and c[field_] is not None]
        if vals:
            out[t["id"]] = max(vals) if t["direction"] == "higher" else min(vals)
    return out


def tables(board: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Header and string rows of each table, shared by the markdown and LaTeX renderers.
    Bold marks (**) go on the best mean/best run per task and the best Agg (ties all bold)."""
    tids = [t["id"] for t in board["tasks"]]
    cell = {(c["agent"], c["task"]): c for c in board["cells"]}
    heads = [f"{t['id']} {ARROW[t['direction']]} {t['metric']}" for t in board["tasks"]]
    best_mean, best_run = _best_per_task(board, "mean"), _best_per_task(board, "best")
    agg_vals = [a["agg"] for a in board["agents"] if a["agg"] is not None]
    aggmax_vals = [a["agg_max"] for a in board["agents"] if a["agg_max"] is not None]

    def same(x: float | None, y: float | None) -> bool:  # float ties, e.g. (0.38+0.36)/2 vs 0.37
        return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15)

    def bold(s: str, yes: bool) -> str:
        return f"**{s}**" if yes else s

    def partial(a: dict[str, Any], s: str) -> str:
        return s if a["agg_tasks"] == a["n_tasks"] or s == "–" else f"{s} ({a['agg_tasks']}/{a['n_tasks']})"

    t4, t6, t5, t8 = [], [], [], []
    base = ["baseline", *[_f(t["baseline"], 3) for t in board["tasks"]]]
    for a in board["agents"]:
        name = a["agent"]
        rank = "-" if a["rank"] is None else str(a["rank"])
        r4, r6, r5, r8 = [rank, name], [rank, name], [name], [name]
        for t in tids:
            c = cell.get((name, t))
            if c is None:
                r4.append("–")
                r6.append("–")
                r5.append("–")
                r8.append("–")
                continue
            n = f"{c['n_scored']}/{c['n_attempted']}"
            thin = "*" if c["thin"] else ""
            if c["mean"] is None:
                r4.append(f"– [{n}]{thin}")
            else:
                std = "" if c["std"] is None else f" ± {c['std']:.4f}"
                m = bold(f"{c['mean']:.4f}", same(c["mean"], best_mean.get(t)))
                r4.append(f"{m}{std} [{n}]{thin}")
            r6.append(bold(_f(c["best"]), same(c["best"], best_run.get(t))) + thin)
            r5.append(f"{n} – {_f(c['scripts_mean'], 1)}")
            r8.append(
                "–"
                if c["used_min"] is None
                else f"{c['used_min']:.2f}/{c['budget_min']:.0f} ({c['utilisation_pct']:.1f}%)"
            )
        r4.append(partial(a, bold(_agg(a["agg"]), bool(agg_vals) and same(a["agg"], max(agg_vals)))))
        r6.append(
            partial(a, bold(_agg(a["agg_max"]), bool(aggmax_vals) and same(a["agg_max"], max(aggmax_vals))))
        )
        r4.insert(2, str(a["runs_per_task"]))
        r8.append(
            "–" if a["used_min"] is None else f"{a['used_min']:.2f} ({a['utilisation_pct']:.1f}%)"
        )
        t4.append(r4)
        t6.append(r6)
        t5.append(r5)
        t8.append(r8)
    excl = [
        [r["agent"], r["task"], str(r["rep"]), r["status"], r["rule"] or "", r["run_dir"] or ""]
        for r in board["excluded"]
    ]
    on = DATA_TITLE[board["data"]]
    return {
        f"Table 4{on}: mean ± std [scored/attempted] over accepted runs; Agg (Eq. 1)": (
            ["rank", "agent", "runs/task", *heads, "Agg"],
            [["", "baseline", "", *base[1:], ""], *t4],
        ),
        f"Table 6{on}: best single run; Agg_max": (
            ["rank", "agent", *heads, "Agg_max"],
            [["", "baseline", *base[1:], ""], *t6],
        ),
        f"Table 5{on}: success rate [scored/attempted] – mean training scripts launched": (["agent", *heads], t5),
        f"Table 8{on}: budget used (minutes used/budget, utilisation)": (["agent", *heads, "mean"], t8),
        f"Runs kept out of every mean, best and Agg{on}": (
            ["agent", "task", "rep", "status", "rule", "review"],
            excl,
        ),
    }


DATA_TITLE = {"real": "", "synthetic": " (SYNTHETIC data)", "unknown": " (data unknown)"}
DATA_NOTE = {
    "real": "",
    "synthetic": "SYNTHETIC data: these runs trained and were scored on generated stand-in data; they test the "
    "pipeline and are comparable with nothing (not the paper, not real-data runs). ",
    "unknown": "Data unknown: these runs recorded no result.json saying what data they used. ",
}


def _legend(board: dict) -> str:
    return DATA_NOTE[board["data"]] + (
        f"* thin cell: fewer than {board['thin_below']} scored runs. Agg over k/T tasks when an "
        "agent lacks some. Ranking: only agents with an accepted run on every task (others: -), "
        "more runs per task first (paper 3.1), then Agg. Review a kept-out run with `onegc-audit verify RUN_DIR`."
    )


def render_md(board: dict) -> str:
    out = [f"> {DATA_NOTE[board['data']].strip()}\n"] if DATA_NOTE[board["data"]] else []
    for title, (head, rows) in tables(board).items():
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        if not rows:
            out.append("| " + " | ".join(["(none)", *[""] * (len(head) - 1)]) + " |")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    out.append(_legend(board))
    return "\n".join(out) + "\n"


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}")
    for ch in "&%$#_{}":
        s = s.replace(ch, "\\" + ch)
    s = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", s)
    return (
        s.replace("±", "$\\pm$").replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$").replace("–", "--")
    )


def render_latex(board: dict) -> str:
    out = []
    for title, (head, rows) in tables(board).items():
        out += [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{_tex(title)}}}",
            "\\begin{tabular}{" + "l" * len(head) + "}",
            "\\toprule",
            " & ".join(_tex(h) for h in head) + " \\\\",
            "\\midrule",
        ]
        out += [" & ".join(_tex(c) for c in r) + " \\\\" for r in rows]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    out.append("% " + _legend(board))
    return "\n".join(out) + "\n"


def long_frame(boards: list[dict]) -> pl.DataFrame:
    """Every number of the boards in one long table (CSV): cell rows, agent rows, excluded
    rows, each with the data its board holds."""
    rows: list[dict[str, Any]] = []
    for board in boards:
        for kind in ("cells", "agents", "excluded"):
            rows += [{"data": board["data"], "kind": kind.removesuffix("s"), **r} for r in board[kind]]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return pl.DataFrame([{k: r.get(k) for k in cols} for r in rows], infer_schema_length=None)


def render(boards: list[dict], fmt: str) -> str:
    """The boards (one per kind of data, from ``leaderboards``) in one format."""
    if fmt == "md":
        return "\n".join(render_md(b) for b in boards)
    if fmt == "latex":
        return "\n".join(render_latex(b) for b in boards)
    if fmt == "json":
        return json.dumps({"format": "onegc-leaderboard-2", "boards": boards}, indent=2) + "\n"
    if fmt == "csv":
        return long_frame(boards).write_csv()
    raise OnegcError(f"unknown format {fmt!r}; use md, csv, json or latex")


def pyplot() -> Any:
    """matplotlib's pyplot (headless), or the one-line error naming the [plot] extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("matplotlib", "plot", "--plot") from None
    return plt


def plot(board: dict, path: Path) -> None:
    """Figure 3: mean training scripts per task vs Agg, one point per agent."""
    plt = pyplot()
    pts = [a for a in board["agents"] if a["agg"] is not None and a["scripts_per_task"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for a in pts:
        ax.scatter(a["scripts_per_task"], a["agg"])
        ax.annotate(a["agent"], (a["scripts_per_task"], a["agg"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("Mean training scripts per task")
    ax.set_ylabel("1GC-7RC Agg score")
    if board["data"] != "real":
        ax.set_title(DATA_TITLE[board["data"]].strip(" ()"))
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
