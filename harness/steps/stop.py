"""Step 6, stop the run: freeze the tree and copy what will be scored (harness/freeze.py),
then SIGTERM what is left, SIGKILL after the grace, and empty the cgroup; every process still
alive at each stage is recorded."""

from __future__ import annotations

import os
import subprocess
import time

import psutil

from onegc.harness.freeze import freeze, thaw
from onegc.harness.steps.state import LiveRun


def stop(run: LiveRun) -> None:
    _freeze(run)
    _end_tree(run)
    os.close(run.fds.pop("status_r"))  # kept open until now: init must never die on a broken pipe


def _freeze(run: LiveRun) -> None:
    """The deadline freeze: candidates and sources as they were now."""
    try:
        m = freeze(run.spec.run_dir, run.spec.workspace, run.cgroup.path if run.cgroup else None,
                   reason=run.end_reason, thaw_after=False)  # fmt: skip (_end_tree thaws after SIGTERM)
    except OSError as exc:
        run.reasons.append(f"the end-of-run freeze failed: {exc}")
        return
    detail = {k: m[k] for k in ("reason", "cgroup_frozen", "problem", "copied_mono")}
    detail["checkpoints"] = {k: v["sha256"] for k, v in m["checkpoints"].items()}
    run.harness.write(kind="freeze", detail=detail)


def _agent_procs(run: LiveRun) -> list[psutil.Process]:
    """Processes of the tree other than our launcher and the namespace's init."""
    launcher = run.procs["launcher"].pid
    mine = {launcher}
    try:
        mine |= {c.pid for c in psutil.Process(launcher).children()}
    except psutil.Error:
        pass
    out = []
    for pid in run.tree_pids():
        if pid in mine:
            continue
        try:
            out.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return out


def _end_tree(run: LiveRun) -> None:
    stage = "deadline" if run.end_reason == "deadline" else "agent_exit"
    cgroup = run.cgroup.path if run.cgroup else None
    alive = _agent_procs(run)
    for p in alive:
        _record_survivor(run, p, f"alive_at_{stage}")
    if alive:
        run.harness.write(kind="sigterm", detail={"pids": [p.pid for p in alive]})
        for p in alive:
            try:
                p.terminate()
            except psutil.Error:
                pass
        thaw(cgroup)  # SIGTERM is pending before anything runs
        end = time.monotonic() + run.spec.grace_s
        while time.monotonic() < end and _agent_procs(run):
            time.sleep(0.05)
        left = _agent_procs(run)
        for p in left:
            _record_survivor(run, p, "alive_after_grace")
        if left:
            run.harness.write(kind="sigkill", detail={"pids": [p.pid for p in left]})
    launcher = run.procs["launcher"]
    if run.cgroup:
        thaw(cgroup)
        run.cgroup.kill()
        if not run.cgroup.wait_empty(10):
            run.reasons.append("the run's cgroup did not empty after cgroup.kill")
    else:
        for p in psutil.Process(launcher.pid).children():
            p.kill()  # the pid namespace's init: its death kills the whole namespace
    try:
        launcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        launcher.kill()
        run.reasons.append("the sandbox launcher had to be killed")


def _record_survivor(run: LiveRun, p: psutil.Process, stage: str) -> None:
    try:
        argv = p.cmdline()
        info = {
            "stage": stage,
            "ppid": p.ppid(),
            "status": p.status(),
            "session": os.getsid(p.pid),
            "create_time": p.create_time(),
        }
    except (psutil.Error, OSError):
        return
    run.harness.write(kind="survivor", pid=p.pid, argv=argv, detail=info)
