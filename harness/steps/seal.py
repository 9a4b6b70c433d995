"""Step 9, seal: the end record (complete or not, and why), the journals closed, the cgroup
removed, and the evidence sealed and signed (evidence/seal.py)."""

from __future__ import annotations

from onegc.evidence.seal import seal as seal_run
from onegc.harness.steps.state import LiveRun


def seal(run: LiveRun) -> None:
    complete = not run.reasons
    run.harness.write(kind="end", detail={"reason": run.end_reason, "complete": complete, "reasons": run.reasons})
    run.harness.close()
    run.health.close()
    if run.cgroup:
        run.cgroup.remove()
    seal_run(run.spec.run_dir, complete=complete, reasons=run.reasons, signer=run.signer)
