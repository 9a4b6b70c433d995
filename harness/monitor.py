"""One monitored agent run, as its steps. The caller (audit) has already created the run
directory (spec.create_run_dir) and populated its workspace.

Each step is a module of harness/steps/ holding one job; they share the run's live state
(steps/state.py) and the types of harness/spec.py."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from onegc.evidence.attest import load_signer
from onegc.harness import view
from onegc.harness.spec import AGENT_UID_BASE, HarnessError, RunOutcome, RunSpec
from onegc.harness.steps import launch, sandbox, score, seal, sensors, snapshots, stop, watchdog
from onegc.harness.steps.state import LiveRun

STEPS: tuple[tuple[str, Callable[[LiveRun], None]], ...] = (
    ("prepare the sandbox", sandbox.prepare),
    ("start the sensors", sensors.start),
    ("snapshot before", snapshots.before),
    ("launch the agent", launch.launch),
    ("watch until it ends or the deadline", watchdog.watch),
    ("stop the run: freeze, then end its tree", stop.stop),
    ("stop the sensors", sensors.stop),
    ("snapshot after", snapshots.after),
    ("score", score.score),
    ("seal", seal.seal),
)


def preflight() -> None:
    if os.geteuid() != 0:
        raise HarnessError(
            "the harness must run as root: it creates the agent's namespaces and cgroup "
            "and drops the agent to an unprivileged user"
        )


def run_monitored(spec: RunSpec) -> RunOutcome:
    preflight()
    signer = load_signer()  # a broken key fails here, before the agent runs, not at the seal
    lease = None
    if spec.agent_uid is None:
        lease = view.UidLease(AGENT_UID_BASE)
        spec.agent_uid = lease.uid
    try:
        run = LiveRun(spec, signer)
        for _name, step in STEPS:
            step(run)
        return run.outcome()
    finally:
        if lease is not None:
            lease.release()


def copy_into_workspace(src: Path, workspace: Path) -> None:
    """Copy a plain task folder into the workspace (tests and the built-in demo task)."""
    shutil.copytree(src, workspace, dirs_exist_ok=True)
