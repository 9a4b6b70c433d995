"""`onegc-audit export`: runs as Inspect evaluation logs, or a sealed run as one bundle file."""

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
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Instead: one file (tar.gz) of a run: "
                                                "evidence, attestations, workspace files the verdict reads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Export runs as Inspect evaluation logs (`inspect view --log-dir DIR` opens them): one
    log per agent x task, a sample per repetition, the transcript as messages, the OS
    evidence as events naming their rows, the official score and the verdict as scores
    (needs the `inspect` extra: pip install 'onegc-audit[inspect]').

    With `--bundle OUT`: one sealed run as one file; `onegc-audit verify OUT --key PUB`
    checks it anywhere, without root or task data."""
    if bundle is not None:
        _bundle(path, bundle, as_json)
        return
    if fmt not in FORMATS:
        raise OnegcError(f"--format must be one of {', '.join(FORMATS)}")
    if out is None:
        raise OnegcError("--format inspect needs --out DIR (or --bundle OUT for a verifiable bundle)")
    from onegc.audit.export_inspect import export as export_inspect

    done = export_inspect(path, out, log_format)
    if as_json:
        print(json.dumps([dict(asdict(d), path=str(d.path)) for d in done], indent=2))
        return
    for d in done:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(d.statuses.items()))
        print(f"wrote {d.path} ({d.agent} x {d.task}: {d.samples} samples: {statuses})")


def _bundle(run_dir: Path, bundle: Path, as_json: bool) -> None:
    from onegc.evidence.bundle import write_bundle

    if not run_dir.is_dir():
        raise OnegcError(f"{run_dir}: no such run directory")
    index = write_bundle(run_dir, bundle)
    if as_json:
        print(json.dumps({"bundle": str(bundle), "files": index["files"], "keyid": index["keyid"]}))
        return
    signed = f"signed by key {index['keyid'][:16]}" if index["keyid"] else "unsigned"
    print(f"{bundle}: {index['files']} files, {signed}")
