"""`onegc-audit export PATH --format inspect --out DIR`: runs as logs other tools read."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from onegc.evidence.errors import OnegcError

FORMATS = ("inspect",)


def export(
    path: Annotated[Path, typer.Argument(help="A run directory, or a runs directory (every sealed run below).")],
    fmt: Annotated[str, typer.Option("--format", help="inspect: Inspect evaluation logs.")] = "inspect",
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write the logs into.")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="eval (Inspect's default) or json.")] = "eval",
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Export runs as Inspect evaluation logs (`inspect view --log-dir DIR` opens them): one
    log per agent x task, a sample per repetition, the transcript as messages, the OS
    evidence as events naming their rows, the official score and the verdict as scores.

    Needs the `inspect` extra: pip install 'onegc-audit[inspect]'."""
    if fmt not in FORMATS:
        raise OnegcError(f"--format must be one of {', '.join(FORMATS)}")
    if out is None:
        raise OnegcError("--format inspect needs --out DIR")
    from onegc.audit.export_inspect import export as export_inspect

    done = export_inspect(path, out, log_format)
    if as_json:
        print(json.dumps([dict(asdict(d), path=str(d.path)) for d in done], indent=2))
        return
    for d in done:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(d.statuses.items()))
        print(f"wrote {d.path} ({d.agent} x {d.task}: {d.samples} samples: {statuses})")
