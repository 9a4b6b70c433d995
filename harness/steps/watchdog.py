"""Step 5, the watchdog: wait for the agent's main process to end or the deadline, and note
any sensor or the launcher dying on the way."""

from __future__ import annotations

import os
import select
import time

from onegc.harness.steps.state import LiveRun


def watch(run: LiveRun) -> None:
    run.end_reason, run.exit_code = _watch(run, run.fds["status_r"], run.deadline_mono)


def _watch(run: LiveRun, status_r: int, deadline: float) -> tuple[str, int | None]:
    launcher = run.procs["launcher"]
    reported_dead: set[str] = set()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            run.harness.write(kind="deadline", detail={"deadline_mono": deadline})
            return "deadline", None
        ready, _, _ = select.select([status_r], [], [], min(0.2, remaining))
        if ready:
            data = os.read(status_r, 64).decode().strip()
            if data:
                code = int(data)
                run.harness.write(kind="agent_exited", detail={"exit_code": code})
                return "agent_exited", code
        if launcher.poll() is not None:
            run.harness.write(kind="launcher_exited", detail={"exit_code": launcher.returncode})
            run.reasons.append(f"the sandbox launcher ended early (exit {launcher.returncode})")
            return "launcher_failed", None
        for name in ("exec_net", "fswatch"):
            if name not in reported_dead and run.procs[name].poll() is not None:
                reported_dead.add(name)
                run.harness.write(kind="sensor_died", detail={"sensor": name, "exit_code": run.procs[name].returncode})
                run.reasons.append(f"sensor {name} died during the run")
