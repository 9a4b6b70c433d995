"""`onegc-audit export RUN --bundle OUT`: a sealed run as one file another machine can verify."""

import json
from pathlib import Path
from typing import Annotated

import typer

from onegc.evidence.bundle import write_bundle
from onegc.evidence.errors import OnegcError


def export(
    run_dir: Annotated[Path, typer.Argument(help="A sealed run directory.")],
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Write one file (tar.gz): evidence, "
                                                "attestations, the workspace files the verdict reads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Export a sealed run; `onegc-audit verify OUT --key PUB` checks it anywhere, without root
    or task data."""
    if bundle is None:
        raise OnegcError("say what to export: --bundle OUT")
    if not run_dir.is_dir():
        raise OnegcError(f"{run_dir}: no such run directory")
    index = write_bundle(run_dir, bundle)
    if as_json:
        print(json.dumps({"bundle": str(bundle), "files": index["files"], "keyid": index["keyid"]}))
        return
    signed = f"signed by key {index['keyid'][:16]}" if index["keyid"] else "unsigned"
    print(f"{bundle}: {index['files']} files, {signed}")
