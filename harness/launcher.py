"""The launcher: becomes the agent's sandbox, then the agent.

Runs as root, spawned by the harness:  python -m onegc.harness.launcher CONFIG_JSON
1. dies with the harness (PDEATHSIG) and enters the run's cgroup;
2. new network namespace holding only loopback, new pid, IPC, UTS and cgroup namespaces;
   if asked, reports the fresh network namespace and waits while the harness binds its
   proxy inside it; then a new mount namespace whose root is the run's deny-by-default
   view (harness/view.py: the runtime read-only, the run's workspace and scratch writable,
   private /tmp, /var/tmp, /dev/shm, nothing else of the host);
3. installs the seccomp filter and hands the listener to the supervisor;
4. forks the namespace's init (pid 1: dies with us, so a killed harness leaves no
   process of the run), which forks the agent as the unprivileged user and reaps.
Init writes the agent's exit status to STATUS_FD as soon as the agent's main process ends.
"""

import json
import os
import signal
import sys
from pathlib import Path

from onegc.harness import seccomp, view
from onegc.harness.kernel import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    PR_SET_PDEATHSIG,
    loopback_up,
    prctl,
    sethostname,
    unshare,
)


def become_agent(cfg: dict) -> None:
    os.closerange(3, 65536)
    view.drop_privileges(cfg["uid"], cfg["gid"])
    os.chdir(cfg["cwd"])
    os.umask(0o022)
    try:
        os.execvpe(cfg["argv"][0], cfg["argv"], cfg["env"])
    except OSError as exc:
        os.write(2, f"onegc launcher: cannot run {cfg['argv'][0]}: {exc.strerror}\n".encode())
        os._exit(127)


def init(cfg: dict, status_fd: int) -> None:
    """pid 1 of the run's pid namespace."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    view.mount_proc()
    agent = os.fork()
    if agent == 0:
        become_agent(cfg)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == agent:
            code = os.waitstatus_to_exitcode(status)
            try:  # init must outlive this write: its death would kill the whole namespace
                os.write(status_fd, f"{code}\n".encode())
                os.close(status_fd)
            except OSError:
                pass


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != cfg["harness_pid"]:
        os._exit(1)
    if cfg.get("cgroup_procs"):
        Path(cfg["cgroup_procs"]).write_text("0")
    # cgroup namespace after joining the run's cgroup: that cgroup becomes the tree's root
    unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
    loopback_up()
    sethostname(view.HOSTNAME)
    if cfg.get("netns_fds"):  # the harness injects its proxy into our namespace, then lets us go
        ready_w, go_r = cfg["netns_fds"]
        os.write(ready_w, b"netns\n")
        os.close(ready_w)
        go = os.read(go_r, 16)
        os.close(go_r)
        if not go.startswith(b"go"):
            os._exit(3)
    view.build(view.ViewSpec.from_dict(cfg["view"]))  # from here on, the host tree is gone
    listener = seccomp.load_with_listener(seccomp.build_filter_bpf())
    os.write(cfg["ctl_fd"], f"{os.getpid()} {listener}\n".encode())
    ack = os.read(cfg["ack_fd"], 16)
    os.close(listener)  # no copy may survive, or the tree hangs when the supervisor dies
    if not ack.startswith(b"ok"):
        os._exit(2)
    child = os.fork()
    if child == 0:
        init(cfg, cfg["status_fd"])
    os.close(cfg["status_fd"])
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
