"""What every step of a monitored run shares: the run's specification, its outcome, the
harness's error, and the run folder's creation (its names are evidence/layout.py's)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onegc.evidence.errors import OnegcError
from onegc.evidence.journal import Journal, journal_path
from onegc.evidence.layout import RunLayout

AGENT_UID_BASE = int(os.environ.get("ONEGC_AGENT_UID", "61000"))
"""First of the per-run agent uids (each run leases its own: view.UidLease)."""
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class HarnessError(OnegcError):
    """The run cannot start (bad name, existing run dir, missing privilege)."""


@dataclass
class BeforeSeal:
    """What a post-agent step (parsing the agent's stream, official scoring) gets: the run,
    its clock, and journals of its own, all sealed with the rest."""

    spec: RunSpec
    start_mono: float
    deadline_mono: float
    journals: dict[str, Journal] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def journal(self, table: str) -> Journal:
        if table not in self.journals:
            self.journals[table] = Journal(journal_path(self.spec.run_dir, table), table)
        return self.journals[table]


@dataclass
class RunSpec:
    run_dir: Path
    argv: list[str]
    label: str
    task: str
    rep: int
    budget_s: float
    grace_s: float = 30.0
    locked: list[str] = field(default_factory=list)
    originals: Path | None = None
    heldout: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    agent_uid: int | None = None
    """The agent's uid; None leases a uid no other live run holds (the usual case)."""
    data: dict | None = None
    """The task data the run is pinned to (version and sha256 of every file), in its start record."""
    view_ro: list[str] = field(default_factory=list)
    """Host paths the agent needs read-only beyond the runtime (harness/view.py) and its program."""
    sample_interval_s: float = 1.0
    file_sensor: str = field(default_factory=lambda: os.environ.get("ONEGC_FILE_SENSOR", "fanotify"))
    """fanotify (harness/fanwatch.py; inotify where it cannot start) or inotify (harness/fswatch.py)."""
    before_seal: list[Callable[[BeforeSeal], None]] = field(default_factory=list)
    runtime_cli: bool = False
    """The agent's main process is an agent CLI (its own traffic goes through the proxy), so
    its network attempts are the runtime's phone-home, told apart from the agent's tools'."""
    on_netns: Callable[[int], None] | None = None
    """Called with a pid inside the agent's fresh network namespace before the agent starts
    (the allow-listing proxy binds there); an exception aborts the launch."""

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def workspace(self) -> Path:
        return self.layout.workspace

    @property
    def scratch(self) -> Path:
        return self.layout.scratch


@dataclass
class RunOutcome:
    run_dir: Path
    complete: bool
    reasons: list[str]
    end_reason: str
    agent_exit_code: int | None


def run_dir_for(runs_dir: Path, label: str, task: str, rep: int) -> Path:
    """RUNS_DIR/LABEL/TASK/rREP after checking the names, and that no run is there yet
    (checked before anything is prepared, and again atomically by create_run_dir)."""
    for what, value in (("label", label), ("task", task)):
        if not SAFE_NAME.match(value):
            raise HarnessError(f"{what} {value!r} must match {SAFE_NAME.pattern}")
    if rep < 1:
        raise HarnessError("rep must be >= 1")
    run_dir = runs_dir.resolve() / label / task / f"r{rep}"
    if run_dir.exists():
        raise HarnessError(f"{run_dir} already exists; a run directory is never reused")
    return run_dir


def create_run_dir(runs_dir: Path, label: str, task: str, rep: int) -> Path:
    """RUNS_DIR/LABEL/TASK/rREP, created empty; an existing run is never reused."""
    run_dir = run_dir_for(runs_dir, label, task, rep)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise HarnessError(f"{run_dir} already exists; a run directory is never reused") from None
    RunLayout(run_dir).workspace.mkdir()
    return run_dir
