"""Step 4, launch: the start record (everything a judge needs to know about the run's set-up),
then the agent's launcher (harness/launcher.py) in its namespaces and view; the budget starts
with it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import asdict

from onegc.harness.steps import sensors
from onegc.harness.steps.state import LiveRun


def launch(run: LiveRun) -> None:
    spec = run.spec
    status_r, status_w = os.pipe()
    run.fds["status_r"] = status_r
    ctl_w, ack_r = run.fds.pop("ctl_w"), run.fds.pop("ack_r")
    config = {
        "harness_pid": os.getpid(),
        "argv": spec.argv,
        "env": run.env,
        "cwd": str(spec.workspace),
        "uid": spec.agent_uid,
        "gid": spec.agent_uid,
        "cgroup_procs": str(run.cgroup.procs_file) if run.cgroup else None,
        "view": asdict(run.sandbox),
        "ctl_fd": ctl_w,
        "ack_fd": ack_r,
        "status_fd": status_w,
    }
    netns_pipes: list[int] = []
    if spec.on_netns is not None:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        netns_pipes = [ready_r, ready_w, go_r, go_w]
        config["netns_fds"] = [ready_w, go_r]
    spec.layout.launch.write_text(json.dumps(config, indent=1))
    start_wall, run.start_mono = time.time(), time.monotonic()  # the budget starts with the agent
    run.deadline_mono = run.start_mono + spec.budget_s
    run.harness.write(kind="start", detail=start_record(run), mono=run.start_mono, t=start_wall)
    with open(spec.layout.stdout, "wb") as out, open(spec.layout.stderr, "wb") as err:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "onegc.harness.launcher", str(spec.layout.launch)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(ctl_w, ack_r, status_w, *netns_pipes[1:3]),
        )
    run.procs["launcher"] = launcher
    for fd in (ctl_w, ack_r, status_w, *netns_pipes[1:3]):
        os.close(fd)
    if netns_pipes:
        _netns_handshake(run, launcher.pid, netns_pipes[0], netns_pipes[3])
    sensors.ready(run, "exec_net")  # the supervisor is ready once it holds the listener
    run.harness.write(kind="agent_started", pid=launcher.pid, argv=spec.argv, detail={})
    sensors.start_sampler(run)


def start_record(run: LiveRun) -> dict:
    spec, sandbox = run.spec, run.sandbox
    return {
        "run_id": f"{spec.label}/{spec.task}/r{spec.rep}",
        "label": spec.label,
        "task": spec.task,
        "rep": spec.rep,
        "argv": spec.argv,
        "budget_s": spec.budget_s,
        "grace_s": spec.grace_s,
        "deadline_mono": run.deadline_mono,
        "agent_uid": spec.agent_uid,
        "view": {"ro": sandbox.ro, "rw": sandbox.rw, "private": sandbox.private},
        "workspace": str(spec.workspace),
        "scratch": str(spec.scratch),
        "originals": str(spec.originals) if spec.originals else None,
        "heldout": str(spec.heldout) if spec.heldout else None,
        "locked": spec.locked,
        "data": spec.data,
        "runtime_cli": spec.runtime_cli,
        "sensors": run.sensors,
        "env": run.env,
        "host": os.uname().nodename,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def _netns_handshake(run: LiveRun, launcher_pid: int, ready_r: int, go_w: int) -> None:
    """Let spec.on_netns act inside the agent's network namespace before the agent runs."""
    try:
        ready, _, _ = select.select([ready_r], [], [], 30)
        ok = bool(ready) and os.read(ready_r, 16).startswith(b"netns")
        if not ok:
            run.reasons.append("the launcher never reported its network namespace")
        else:
            try:
                run.spec.on_netns(launcher_pid)
            except Exception as exc:  # the hook's failure must not leave the launcher hanging
                run.reasons.append(f"network namespace hook failed: {exc!r}")
                ok = False
            else:
                run.harness.write(kind="netns_ready", pid=launcher_pid, detail={})
        try:
            os.write(go_w, b"go\n" if ok else b"no\n")
        except BrokenPipeError:
            pass
    finally:
        os.close(ready_r)
        os.close(go_w)
