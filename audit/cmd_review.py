"""`onegc-audit review RUN_DIR`: the document a disqualification review needs."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from onegc.audit.review import build, to_html, to_markdown
from onegc.evidence.integrity import BadRunDir


def review(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/opus47/t2/r4.")],
    fmt: Annotated[str, typer.Option("--format", help="md or html.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write to a file instead of stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The review's content as JSON.")] = False,
) -> None:
    """Verdict, each rule's cited rows, a timeline with the violations marked, the transcript
    around each violation, checkpoints and scores, and the seal's status."""
    if fmt not in ("md", "html"):
        raise typer.BadParameter(f"--format is md or html, not {fmt!r}")
    if not run_dir.is_dir():
        raise BadRunDir(f"{run_dir}: no such run directory")
    r = build(run_dir)
    rendered = {"html": to_html, "md": to_markdown}[fmt]
    text = json.dumps(asdict(r) | {"verdict": r.verdict.model_dump(mode="json")}, indent=1, default=str) \
        if as_json else rendered(r)
    if out:
        out.write_text(text)
        if not as_json:
            print(f"wrote {out} (verdict: {r.verdict.status})")
    else:
        print(text)
