"""``onegc-audit tasks ...``: list the benchmark tasks and prepare their data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from onegc.tasks import registry

app = typer.Typer(help="The seven 1GC-7RC tasks: metadata and data preparation.")


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List the tasks with budget, metric, evaluation split and paper baseline."""
    specs = registry.list_tasks()
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in specs]))
        return
    for s in specs:
        arrow = "down" if s.direction == "lower" else "up"
        typer.echo(
            f"{s.id:<3} {s.title:<40} {s.metric} ({arrow})  {s.budget_s // 60} min  "
            f"eval={s.eval_split}  baseline={s.baseline_score:g}"
        )


@app.command("prepare")
def prepare_cmd(
    task: Annotated[str, typer.Argument(help="Task id, e.g. t6.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the data go.")],
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Small synthetic data in the real format.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Prepare a task's data (real when an offline copy or the network has it)."""
    prepared = registry.prepare_data(task, data_dir, synthetic=True if synthetic else None)
    kind = "synthetic" if prepared.synthetic else "real"
    if as_json:
        typer.echo(json.dumps({"task": prepared.task_id, "data": kind, "data_dir": str(prepared.data_dir),
                               "agent_dir": str(prepared.agent_dir), "files": len(prepared.files)}))
        return
    typer.echo(f"{prepared.task_id}: {kind} data prepared in {prepared.data_dir}")
    typer.echo(f"agent files: {prepared.agent_dir}  ({len(prepared.files)} files hashed)")
