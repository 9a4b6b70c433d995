"""The launcher: becomes the agent's sandbox, then the agent.

Runs as root, spawned by the harness:  python -m onegc.harness.launcher CONFIG_JSON
1. dies with the harness (PDEATHSIG) and enters the run's cgroup;
2. new network namespace holding only loopback, new mount namespace (private /tmp,
   /var/tmp, /dev/shm; paths the agent needs made reachable), new pid namespace;
   if asked, reports the fresh network namespace and waits while the harness binds its
   proxy inside it;
3. installs the seccomp filter and hands the listener to the supervisor;
4. forks the namespace's init (pid 1: dies with us, so a killed harness leaves no
   process of the run), which forks the agent as the unprivileged user and reaps.
Init writes the agent's exit status to STATUS_FD as soon as the agent's main process ends.
"""

import json
import os
import signal
import stat
import sys
import tempfile
from pathlib import Path

from onegc.harness import seccomp
from onegc.harness.kernel import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_PDEATHSIG,
    loopback_up,
    mount,
    prctl,
    umount,
    unshare,
)


def blocked_ancestor(path: Path) -> Path | None:
    """The top-most ancestor that an unprivileged user cannot traverse (no o+x)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def expose(paths: list[str]) -> None:
    """Make `paths` reachable for the agent without touching the host's permissions.

    For a closed ancestor (typically /root, holding pyenv or the runs dir), its content is
    parked on a stage mount, a world-traversable tmpfs covers it, and only the needed
    children are bound back. All of it happens in the agent's private mount namespace.
    """
    for _ in range(8):
        groups: dict[Path, set[str]] = {}
        for p in map(Path, paths):
            top = blocked_ancestor(p)
            if top is not None:
                groups.setdefault(top, set()).add(p.relative_to(top).parts[0])
        if not groups:
            return
        for top, children in groups.items():
            stage = tempfile.mkdtemp(prefix="onegc-stage-", dir="/run")
            mount(str(top), stage, None, MS_BIND | MS_REC)
            mount("tmpfs", str(top), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
            for child in sorted(children):
                src = Path(stage, child)
                dst = top / child
                if src.is_dir():
                    dst.mkdir(mode=0o755)
                else:
                    dst.touch(mode=0o644)
                mount(str(src), str(dst), None, MS_BIND | MS_REC)
            umount(stage)
            os.rmdir(stage)


def privatise(private_mounts: list[list[str]], needed: list[str]) -> None:
    """Bind the run's scratch dirs over /tmp, /var/tmp and /dev/shm. What the agent needs
    from below them (a checkout or venv under /tmp, say) is parked on a stage first and
    bound back on top, so privacy never hides the agent's own interpreter or code."""
    targets = [t for t, _ in private_mounts]
    carried = [p for p in needed if any(Path(p) == Path(t) or Path(t) in Path(p).parents for t in targets)]
    stage = tempfile.mkdtemp(prefix="onegc-carry-", dir="/run") if carried else None
    for i, path in enumerate(carried):
        os.mkdir(f"{stage}/{i}")
        mount(path, f"{stage}/{i}", None, MS_BIND | MS_REC)
    for target, source in private_mounts:
        mount(source, target, None, MS_BIND | MS_REC)
    for i, path in enumerate(carried):
        os.makedirs(path, exist_ok=True)
        mount(f"{stage}/{i}", path, None, MS_BIND | MS_REC)
        umount(f"{stage}/{i}")
        os.rmdir(f"{stage}/{i}")
    if stage:
        os.rmdir(stage)


def become_agent(cfg: dict) -> None:
    os.closerange(3, 65536)
    os.setgroups([])
    os.setgid(cfg["gid"])
    os.setuid(cfg["uid"])
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
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
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
    unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID)
    loopback_up()
    if cfg.get("netns_fds"):  # the harness injects its proxy into our namespace, then lets us go
        ready_w, go_r = cfg["netns_fds"]
        os.write(ready_w, b"netns\n")
        os.close(ready_w)
        go = os.read(go_r, 16)
        os.close(go_r)
        if not go.startswith(b"go"):
            os._exit(3)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    expose(cfg["expose"])
    privatise(cfg["private_mounts"], cfg["expose"])
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
