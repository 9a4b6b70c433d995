"""`onegc-audit verify RUN_DIR`: is the sealed evidence intact?"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from onegc.audit.exitcodes import BY_STATUS
from onegc.evidence.integrity import verify_run

STYLE = {"intact": "green", "incomplete": "yellow", "tampered": "red"}


def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/opus47/t2/r4.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Check a run's seal: intact, tampered or incomplete (exit 0, 6, 5; 2 for a bad path)."""
    report = verify_run(run_dir)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console = Console()
        console.print(f"[bold]{run_dir}[/]: [{STYLE[report.status]}]{report.status}[/]")
        for p in report.problems:
            console.print(f"  [red]tampered:[/] {p}", highlight=False)
        for r in report.incomplete_reasons:
            console.print(f"  [yellow]incomplete:[/] {r}", highlight=False)
    raise typer.Exit(BY_STATUS[report.status])
