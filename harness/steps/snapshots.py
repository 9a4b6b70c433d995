"""Steps 3 and 7, the snapshots (harness/snapshot.py): every file of the workspace, the locked
originals and the held-out data, before the agent starts and after the run's filesystems are
plain folders again."""

from __future__ import annotations

from pathlib import Path

from onegc.harness import snapshot
from onegc.harness.steps.state import LiveRun


def scopes(run: LiveRun) -> dict[str, Path]:
    spec = run.spec
    out = {"workspace": spec.workspace}
    if spec.originals:
        out["originals"] = spec.originals
    if spec.heldout:
        out["heldout"] = spec.heldout
    return out


def before(run: LiveRun) -> None:
    snapshot.record(run.snaps, "before", scopes(run))


def after(run: LiveRun) -> None:
    snapshot.record(run.snaps, "after", scopes(run))
    run.snaps.close()
