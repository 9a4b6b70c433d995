"""`onegc-audit sweep plan|run|status`: the benchmark matrix, locally or on Slurm."""

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from onegc.audit import sweep
from onegc.audit.progress import Status, counted, on_terminal
from onegc.evidence.layout import RunLayout
from onegc.tasks import registry

app = typer.Typer(help="The agents x tasks x repetitions matrix.", no_args_is_help=True)

Agents = Annotated[str, typer.Option(help="Comma-separated agents from `agents list`.")]
Tasks = Annotated[str, typer.Option(help="Comma-separated task ids, or `all`.")]
Reps = Annotated[int, typer.Option(help="Repetitions per agent and task.")]
RunsDir = Annotated[Path, typer.Option(help="Root of the run directories.")]


def _cells(agents: str, tasks: str, reps: int) -> list[sweep.Cell]:
    return sweep.plan([a for a in agents.split(",") if a], [t for t in tasks.split(",") if t], reps)


@app.command("plan")
def plan_cmd(agents: Agents, tasks: Tasks = "all", reps: Reps = 5, runs_dir: RunsDir = Path("runs"),
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the matrix and the state of every cell; runs nothing."""
    cells = _cells(agents, tasks, reps)
    rows = [{**c.__dict__, "run_dir": str(c.run_dir(runs_dir)), "state": sweep.state(runs_dir, c)}
            for c in cells]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("agent", "task", "rep", "run dir", "state")
    for r in rows:
        table.add_row(r["agent"], r["task"], str(r["rep"]), r["run_dir"], r["state"])
    Console().print(table)
    print(f"{len(rows)} runs, {sum(r['state'] == 'todo' for r in rows)} to do")


@app.command("run")
def run_cmd(
    agents: Agents, tasks: Tasks = "all", reps: Reps = 5, runs_dir: RunsDir = Path("runs"),
    executor: Annotated[str, typer.Option(help="local or slurm.")] = "local",
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    gpus_per_run: Annotated[int, typer.Option(help="GPUs per Slurm job.")] = 1,
    retry_incomplete: Annotated[
        bool, typer.Option(help="Rerun incomplete cells (the old run is kept in .attic).")
    ] = False,
    budget_s: Annotated[float | None, typer.Option(help="Override every task's budget (tests).")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Synthetic task data.")] = False,
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the agents' environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (cell -> outcome) at the end.")] = False,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Cells at once (local): default one per GPU, else 1.")
    ] = None,
) -> None:
    """Run every cell that is not sealed yet; safe to rerun and to run twice at once."""
    cells = _cells(agents, tasks, reps)
    sweep.save_plan(runs_dir, cells)
    extra = (["--budget-s", str(budget_s)] if budget_s else []) + (["--synthetic"] if synthetic else [])
    for pair in env or []:
        extra += ["--env", pair]
    if executor == "slurm":
        longest = max(registry.get_task(c.task).budget_s for c in cells)
        timeout = int((budget_s or longest) / 60) + 30  # the budget, the grace and scoring
        ids = sweep.run_slurm(runs_dir, cells, extra, retry_incomplete, partition=partition,
                              gpus_per_run=gpus_per_run, timeout_min=timeout)
        print(json.dumps({"slurm_jobs": ids}) if as_json else f"submitted {len(ids)} Slurm jobs: {', '.join(ids)}")
        return
    if executor != "local":
        raise typer.BadParameter("--executor is local or slurm")
    console = Console()
    done = Counter()
    running: dict[str, str] = {}
    started = time.monotonic()

    def report(cell: sweep.Cell, what: str) -> None:
        done[what.split(" ")[0]] += 1
        running.pop(cell.key, None)
        if not as_json:
            console.print(f"[{sum(done.values())}/{len(cells)}] {cell.label} {cell.task} r{cell.rep}: {what}")

    def starting(cell: sweep.Cell) -> None:
        running[cell.key] = f"{cell.label} {cell.task} r{cell.rep}"

    def line() -> str:
        return counted(sum(done.values()), len(cells), "sweep: cells done", started,
                       "running " + ", ".join(running.values()) if running else "")

    with Status(on_terminal(as_json), follow=line):
        results = sweep.run_local(runs_dir, cells, extra, retry_incomplete, report, starting, jobs)
    if as_json:
        print(json.dumps(results, indent=1))



@app.command("status")
def status_cmd(runs_dir: Annotated[Path, typer.Argument(help="Root of the run directories.")],
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """done / running / incomplete / tampered / to do, per agent and task (works mid-sweep)."""
    cells = sweep.load_plan(runs_dir)
    planned = {c.key for c in cells}
    for run_dir in sorted(runs_dir.glob("*/*/r*")):
        if run_dir.is_dir() and not run_dir.parts[-3].startswith("."):
            label, task, rep = RunLayout(run_dir).identity
            if rep is None:  # not a run folder (rN)
                continue
            cell = sweep.Cell(label, label, task, rep)
            if cell.key not in planned:
                cells.append(cell)
    counts: dict[tuple[str, str], Counter] = {}
    for c in cells:
        counts.setdefault((c.label, c.task), Counter())[sweep.state(runs_dir, c)] += 1
    if as_json:
        out = [{"agent": a, "task": t, **cnt} for (a, t), cnt in sorted(counts.items())]
        print(json.dumps(out, indent=1))
        return
    states = ("done", "running", "incomplete", "tampered", "todo")
    table = Table("agent", "task", *states)
    for (a, t), cnt in sorted(counts.items()):
        table.add_row(a, t, *(str(cnt.get(s, 0)) for s in states))
    Console().print(table)
