"""`onegc-audit import PATH`: transcripts and artifacts recorded elsewhere into sealed,
queryable run directories (incomplete by construction: no OS evidence)."""

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from onegc.audit import importer
from onegc.audit.progress import Status, counted, on_terminal
from onegc.evidence.errors import OnegcError


def import_cmd(
    path: Annotated[
        Path, typer.Argument(help="A transcript file, a run folder, or (with --agent-from-path) a tree.")
    ],
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Runs directory to write into.")],
    agent: Annotated[str | None, typer.Option(help="Agent label of the run.")] = None,
    task: Annotated[str | None, typer.Option(help="Task id of the run (t1..t7).")] = None,
    rep: Annotated[int | None, typer.Option(help="Repetition number (>= 1).")] = None,
    agent_from_path: Annotated[
        str | None,
        typer.Option("--agent-from-path", help="Map paths under PATH to runs, e.g. '{agent}/{task}/r{rep}'."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="claude, codex or opencode (default: detected).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Import agent transcripts (Claude Code stream-json, Codex exec --json + rollout,
    OpenCode run --format json) and the artifacts beside them as sealed run directories.

    Imported runs are never accepted: `verify` says incomplete and lists what the
    transcript shows. Importing the same transcript twice makes one run."""
    if fmt is not None and fmt not in importer.FORMATS:
        raise OnegcError(f"--format must be one of {', '.join(importer.FORMATS)}")
    console = Console(highlight=False, soft_wrap=True)
    if agent_from_path:
        if any(v is not None for v in (agent, task, rep)):
            raise OnegcError("give either --agent/--task/--rep or --agent-from-path, not both")
        if not path.is_dir():
            raise OnegcError(f"{path}: --agent-from-path needs a folder to walk")
        started = time.monotonic()
        with Status(on_terminal(as_json)) as status:
            report = importer.walk(path, runs_dir, agent_from_path, fmt, lambda n, total, folder: status.show(
                counted(n, total, "importing: folder", started, str(folder.relative_to(path)))))
        if as_json:
            print(json.dumps({"imported": [_as_dict(d) for d in report.imported],
                              "duplicates": [_as_dict(d) for d in report.duplicates],
                              "skipped": report.skipped}, indent=1))
            return
        for done in report.imported:
            console.print(f"imported {done.run_dir} ({done.fmt}{_dropped(done)})")
        for done in report.duplicates:
            console.print(f"duplicate: already imported as {done.duplicate_of}")
        for line in report.skipped:
            console.print(f"skipped {line}")
        console.print(
            f"{len(report.imported)} imported, {len(report.skipped)} skipped, "
            f"{len(report.duplicates)} duplicates"
        )
        return
    if agent is None or task is None or rep is None:
        raise OnegcError("give --agent, --task and --rep (or --agent-from-path PATTERN for a tree)")
    done = importer.import_one(importer.source_of(path, fmt), runs_dir, agent, task, rep)
    if as_json:
        print(json.dumps(_as_dict(done), indent=1))
        return
    if done.duplicate_of:
        console.print(f"duplicate: {path} was already imported as {done.duplicate_of}")
        return
    console.print(f"imported {done.run_dir} ({done.fmt}{_dropped(done)})")
    for line in done.dropped[:20]:
        console.print(f"  dropped {line}")
    console.print("verify: incomplete (imported: no OS evidence; see `onegc-audit verify`)")


def _as_dict(done: importer.Imported) -> dict:
    return {"run_dir": str(done.run_dir), "format": done.fmt, "counts": done.counts, "dropped": done.dropped,
            "duplicate_of": None if done.duplicate_of is None else str(done.duplicate_of)}


def _dropped(done: importer.Imported) -> str:
    calls, msgs = done.counts.get("tool_calls", 0), done.counts.get("messages", 0)
    dropped = f", {len(done.dropped)} lines dropped" if done.dropped else ""
    return f", {calls} tool calls, {msgs} messages{dropped}"
