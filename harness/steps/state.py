"""The live state of one monitored run, which every step reads and adds to."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field

import psutil

from onegc.evidence.attest import Signer
from onegc.evidence.journal import Journal, journal_path
from onegc.harness import view
from onegc.harness.cgroup import RunCgroup
from onegc.harness.runfs import RunFs
from onegc.harness.spec import RunOutcome, RunSpec


@dataclass
class LiveRun:
    spec: RunSpec
    signer: Signer | None
    reasons: list[str] = field(default_factory=list)
    """Why the run is incomplete; empty for a complete run."""
    sensors: dict[str, bool | str] = field(default_factory=dict)
    """Each sensor's state (started or not) and the file sensor in use, in the start record."""
    cgroup: RunCgroup | None = None
    runfs: RunFs | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    """The harness's children: the sensors ('fswatch', 'exec_net') and the 'launcher'."""
    env: dict[str, str] = field(default_factory=dict)
    sandbox: view.ViewSpec | None = None
    fds: dict[str, int] = field(default_factory=dict)
    """Pipe ends between the steps: the supervisor's control pair, the launcher's status."""
    start_mono: float = 0.0
    deadline_mono: float = 0.0
    end_reason: str = ""
    exit_code: int | None = None
    sampler: threading.Thread | None = None
    stop_sampler: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.spec.layout.agent_dir.mkdir(exist_ok=True)
        self.harness = Journal(journal_path(self.spec.run_dir, "harness_events"), "harness_events")
        self.health = Journal(journal_path(self.spec.run_dir, "sensor_health"), "sensor_health")
        self.snaps = Journal(journal_path(self.spec.run_dir, "snapshots"), "snapshots")

    def tree_pids(self) -> list[int]:
        """The processes of the run now: its cgroup's, or the launcher's descendants."""
        launcher = self.procs.get("launcher")
        if self.cgroup:
            return self.cgroup.pids()
        if launcher is None:
            return []
        try:
            p = psutil.Process(launcher.pid)
            return [p.pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []

    def outcome(self) -> RunOutcome:
        return RunOutcome(self.spec.run_dir, not self.reasons, self.reasons, self.end_reason, self.exit_code)
