"""`onegc-audit verify RUN_DIR`: integrity of the seal, then every rule -> the run's verdict."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from onegc.audit.exitcodes import BY_STATUS
from onegc.rules.engine import judge, load_policy, verdict_json

STYLE = {
    "accepted": "green",
    "no_score": "yellow",
    "disqualified": "red",
    "incomplete": "yellow",
    "tampered": "red",
}
SHOWN_ACTS = 5
OUTCOME_STYLE = {"pass": "green", "fail": "red", "attempt": "red", "not_applicable": "dim"}


def task_direction(task: str) -> str | None:
    """'lower' or 'higher' from the task registry, None for a task it does not know."""
    from onegc.tasks import registry

    try:
        return registry.get_task(task).direction
    except Exception:  # a run of an unknown or test task: the engine says so in the score
        return None


def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/opus47/t2/r4.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (TOML); default: the strict policy.")
    ] = None,
) -> None:
    """Judge a run: seal integrity, then Rules 1-9 and the warnings, then the score.

    Exit 0 accepted, 3 no_score, 4 disqualified, 5 incomplete, 6 tampered, 2 bad input.
    Nothing is written into the run directory."""
    verdict = judge(run_dir, load_policy(policy), direction_for=task_direction)
    if as_json:
        print(verdict_json(verdict))
    else:
        print_verdict(run_dir, verdict)
    raise typer.Exit(BY_STATUS[verdict["status"]])


def print_verdict(run_dir: Path, v: dict) -> None:
    console = Console(highlight=False, soft_wrap=True)
    status = f"[{STYLE[v['status']]}]{v['status']}[/]"
    console.print(f"[bold]{run_dir}[/]: {status}  (policy {v['policy']['name']})")
    if v["score"]:
        console.print(f"  official score {v['score']['official']} from {v['score']['checkpoint']}")
    for reason in v["reasons"]:
        console.print(f"  {reason}")
    for p in v["integrity"]["problems"]:
        console.print(f"  [red]tampered:[/] {p}")
    for r in v["rules"]:
        tag = (
            ""
            if r["outcome"] in ("pass", "not_applicable")
            else (" [red](disqualifies)[/]" if r["disqualifies"] else f" ({r['severity']})")
        )
        outcome = f"[{OUTCOME_STYLE[r['outcome']]}]{r['outcome']:<14}[/]"
        console.print(f"  {r['id']:<3} {outcome} {r['title']}{tag}")
        acts = r.get("acts", [])
        for act in acts[:SHOWN_ACTS]:  # grouped by act, the decisive one first
            times = f"[bold]{act['count']}x[/] " if act["count"] > 1 else ""
            console.print(f"        {times}{escape(act['output'])}")
        if len(acts) > SHOWN_ACTS:
            rest = acts[SHOWN_ACTS:]
            rows = sum(a["count"] for a in rest)
            console.print(f"        ... {len(rest)} more acts ({rows} rows; --json lists them)")
