"""`onegc-audit score RUN_DIR`: score a sealed run again (a changed evaluator, a run scored
before a fix). The new result goes beside the old one in rescore/STAMP/, with who, when
and why, under its own seal; nothing sealed is overwritten."""

import getpass
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from onegc.audit import official
from onegc.audit.cmd_run import DEFAULT_DATA_DIR, score_line
from onegc.audit.exitcodes import BY_STATUS
from onegc.evidence.attest import load_signer
from onegc.evidence.errors import OnegcError
from onegc.evidence.integrity import BadRunDir, verify_run
from onegc.evidence.journal import journal_path
from onegc.evidence.layout import RESULT_NAME
from onegc.evidence.seal import seal_addendum
from onegc.harness.scoring import rescore, verified_records
from onegc.tasks import registry


def _task_of(run_dir: Path) -> str:
    for rec in verified_records(journal_path(run_dir, "harness_events"), "harness_events"):
        if rec.get("kind") == "start":
            detail = rec.get("detail") or {}
            return str((json.loads(detail) if isinstance(detail, str) else detail)["task"])
    raise BadRunDir(f"{run_dir}: no start event: not a run directory")


def _same_data(recorded: dict[str, Any], prepared: registry.PreparedData) -> bool:
    want = recorded.get("files") or {}
    return all(prepared.files.get(k) == v for k, v in want.items())


def _data(task: registry.TaskSpec, run_dir: Path, data_dir: Path | None) -> tuple[Path, dict]:
    """The prepared data the run was scored against: the recorded version folder when it still
    holds the same files, else a version under ``data_dir`` (or the default cache) prepared the
    same way (real or synthetic) and checked against the run's pinned hashes."""
    recorded = official.recorded_data(run_dir)
    explicit = Path(data_dir) if data_dir else None
    candidates = [explicit] if explicit else []
    if recorded.get("data_dir"):
        candidates.append(Path(recorded["data_dir"]))
    candidates.append(DEFAULT_DATA_DIR / task.id)
    synthetic = recorded.get("synthetic")
    for folder in candidates:
        if folder != explicit and not recorded.get("files"):
            continue  # fail closed: a data version nobody recorded is never assumed, only named
        if (folder / "prepared.json").is_file():
            prepared = registry.load_prepared(task.id, folder)
        elif folder == explicit or any(folder.glob(".latest-*")):
            prepared = registry.prepare_data(task.id, folder, synthetic)
        else:
            continue
        if not recorded.get("files") or _same_data(recorded, prepared):
            return prepared.data_dir, official.data_context(prepared)
    if not recorded.get("files"):
        raise OnegcError(f"{run_dir}: the run records no data version to score against",
                         hint="pass --data-dir to the prepared data to use (recorded in the rescore)")
    raise OnegcError(
        f"no prepared data for {task.id} matches the files this run was scored against; "
        "pass --data-dir to where they are"
    )


def score(
    run_dir: Annotated[Path, typer.Argument(help="A sealed run directory, e.g. runs/opus47/t2/r4.")],
    why: Annotated[str, typer.Option(help="Why the run is scored again (recorded).")],
    who: Annotated[str | None, typer.Option(help="Who asks (default: the login name).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Prepared task data (default: what the run used).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")] = False,
) -> None:
    """Score a sealed run again into RUN_DIR/rescore/STAMP/ (sealed; verify checks it)."""
    report = verify_run(run_dir)
    if report.status == "tampered":
        raise OnegcError(f"{run_dir}: tampered evidence (it no longer matches its seal); refusing to score it",
                         exit_code=BY_STATUS["tampered"])
    task = registry.get_task(_task_of(run_dir))
    folder, context = _data(task, run_dir, data_dir)
    who = who or os.environ.get("SUDO_USER") or getpass.getuser()
    signer = load_signer()
    out = rescore(
        run_dir,
        official.task_evaluator(task.id, folder, pinned=official.recorded_data(run_dir).get("files")),
        official.task_policy(task, context),
        who=who,
        why=why,
        seal_addendum=lambda folder, meta: seal_addendum(folder, meta, signer),
    )
    result = json.loads((out / RESULT_NAME).read_text())
    if as_json:
        print(json.dumps({"rescore_dir": str(out), "result": result}, indent=2))
    else:
        Console().print(f"rescored into [bold]{out}[/]", highlight=False)
        Console().print(score_line(result), highlight=False)
    raise typer.Exit(0 if result.get("outcome") == "scored" else BY_STATUS["no_score"])
