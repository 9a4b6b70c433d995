"""`onegc-audit seal RUN_DIR --recover`: close the record of a run whose harness died."""

import json
from pathlib import Path
from typing import Annotated

import typer

from onegc.audit.exitcodes import BY_STATUS
from onegc.evidence.attest import load_signer
from onegc.evidence.integrity import BadRunDir, verify_run
from onegc.evidence.layout import JOURNAL_DIR, RunLayout
from onegc.evidence.seal import MANIFEST_NAME, SealError, seal
from onegc.harness.runfs import RunFs


def seal_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory whose harness died before sealing.")],
    recover: Annotated[bool, typer.Option("--recover", help="Seal what the journals hold.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Seal the journals of an interrupted run, as they are: the run stays `incomplete`,
    and every record written before the crash becomes queryable. Journals are never edited."""
    if not recover:
        raise SealError("sealing by hand is only for interrupted runs: pass --recover")
    if not (run_dir / JOURNAL_DIR).is_dir():
        raise BadRunDir(f"{run_dir}: not a run directory (no journal/)")
    if (run_dir / MANIFEST_NAME).exists():
        raise SealError(f"{run_dir} is already sealed")
    layout = RunLayout(run_dir)
    if layout.fs_dir.exists():  # the run's own filesystems, still holding the agent's files
        try:
            recovered = RunFs.recover(layout)
        except OSError as exc:
            raise SealError(f"{run_dir}: the run's filesystems in {layout.fs_dir} could not be copied back "
                            f"({exc}); nothing was sealed") from None  # fmt: skip
        if recovered and not as_json:
            print(f"{run_dir}: copied back from the run's own filesystems: {', '.join(recovered)}")
    seal(run_dir, complete=False, reasons=["recovered: the harness died before sealing the run"],
         signer=load_signer())
    report = verify_run(run_dir)
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), "sealed": True, "integrity": report.status}))
    else:
        print(f"{run_dir}: sealed after recovery; verify: {report.status}")
    raise typer.Exit(BY_STATUS[report.status])
