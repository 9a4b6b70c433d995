"""A deny-by-default filesystem view: a fresh root holding only what one untrusted process needs.

Used for the agent (by the launcher) and for the evaluator's model process (``python -m
onegc.harness.view``). Built as root in a private mount namespace: a tmpfs root, read-only
binds of the runtime (``/usr``, the interpreter's prefixes, a few ``/etc`` files), read-write
binds of the run's own folders at their host paths, a minimal ``/dev``, private ``/tmp``,
``/var/tmp`` and ``/dev/shm``, an empty ``/proc`` for the pid namespace's own procfs; then
``pivot_root`` and the old root detached, so nothing else of the host is reachable (other
runs, task data and caches, held-out files, ``/run``, ``/srv``, ``/home``). Everything
outside the writable binds is read-only in the kernel (EROFS) or absent (ENOENT).
(research/sandbox-by-construction.md section 1 measured this recipe on our kernel.)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import site
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from onegc.harness.kernel import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    loopback_up,
    mount,
    mount_setattr,
    pivot_root,
    prctl,
    sethostname,
    umount,
    unshare,
)

# Where the new root is assembled, in each sandbox's own mount namespace: one empty host
# folder serves every concurrent sandbox (a mount in a private namespace is invisible to others).
ASSEMBLY = Path("/run/onegc-audit/view-root")
SYSTEM_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC_RO = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "localtime", "timezone", "hosts",
    "ssl", "ca-certificates", "ca-certificates.conf", "alternatives", "mime.types", "profile", "profile.d",
    "bash.bashrc", "inputrc", "os-release", "protocols", "services", "terminfo", "gitconfig", "magic",
)  # fmt: skip
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
HOSTNAME = "onegc-sandbox"


@dataclass
class ViewSpec:
    """What one sandbox sees. Host paths keep their names inside the view."""

    ro: list[str] = field(default_factory=list)
    """Bound read-only (recursively, submounts included)."""
    rw: list[str] = field(default_factory=list)
    """Bound read-write: the run's own folders."""
    private: dict[str, str] = field(default_factory=dict)
    """View path -> host folder bound read-write there (/tmp, /var/tmp, /dev/shm; a fresh
    tmpfs where absent)."""
    uid: int = 65534
    gid: int = 65534
    home: str = "/"
    gpu: bool = True
    """Bind the NVIDIA device nodes and /proc/driver/nvidia where the host has them."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> ViewSpec:
        return cls(**d)


def runtime_paths() -> list[str]:
    """Read-only paths the Python environment needs: system files, the venv, the base install."""
    paths = {p for p in SYSTEM_RO if os.path.lexists(p)}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths |= set(site.getsitepackages())
    return sorted(p for p in paths if os.path.lexists(p))


def program_root(path: str) -> str:
    """The folder a program needs beside itself: its package root for a node_modules install
    (an agent CLI), else its own directory."""
    real = Path(os.path.realpath(path))
    for parent in real.parents:
        if parent.name == "node_modules":
            return str(parent.parent)
    return str(real.parent)


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _target(root: str, dst: str) -> str:
    return root + dst


def _mkdirs(target: str) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)


def _bind(src: str, target: str, *, readonly: bool, device: bool = False) -> None:
    if os.path.isdir(src):
        _mkdirs(target)
    else:  # a file or a device node is bound onto an empty regular file
        _mkdirs(os.path.dirname(target))
        if not os.path.exists(target):
            with open(target, "a"):
                pass
    mount(src, target, None, MS_BIND | MS_REC)
    # MS_BIND|MS_RDONLY is ignored and a remount is not recursive: one recursive mount_setattr
    # makes the whole bound subtree read-only, submounts included.
    attrs = MOUNT_ATTR_NOSUID | (0 if device else MOUNT_ATTR_NODEV) | (MOUNT_ATTR_RDONLY if readonly else 0)
    mount_setattr(target, attrs, recursive=True)


def _plan(spec: ViewSpec) -> list[tuple[str, str | None, str]]:
    """(view path, host source, kind) with kind ro / rw / link, parents before children."""
    plan: list[tuple[str, str | None, str]] = []
    seen_ro: list[str] = []
    reals = set()
    for p in set(spec.ro):
        if os.path.islink(p) and os.path.dirname(p) == "/":  # merged-usr /bin -> usr/bin: the link itself
            plan.append((p, os.readlink(p), "link"))
        elif os.path.exists(p):
            reals.add(os.path.realpath(p))
    for real in sorted(reals, key=lambda s: (s.count("/"), s)):  # ancestors first: a descendant is covered
        if not _covered(real, seen_ro):
            seen_ro.append(real)
            plan.append((real, real, "ro"))
    for p in spec.rw:
        real = os.path.realpath(p)
        if _covered(real, seen_ro):
            raise OSError(f"{real} lies inside read-only {next(r for r in seen_ro if _covered(real, [r]))}")
        plan.append((real, real, "rw"))
    for dst in ("/tmp", "/var/tmp"):
        src = spec.private.get(dst)
        plan.append((dst, os.path.realpath(src), "rw") if src else (dst, None, "tmpfs"))
    return sorted(plan, key=lambda t: (t[0].count("/"), t[0]))


def check(spec: ViewSpec) -> None:
    """Raise OSError when the view cannot be built (a writable folder inside a read-only one),
    before anything is started."""
    _plan(spec)


def _dev(root: str, spec: ViewSpec) -> None:
    dev = _target(root, "/dev")
    _mkdirs(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEV_NODES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", f"{dev}/{name}", readonly=False, device=True)
    if spec.gpu:
        for name in sorted(os.listdir("/dev")):
            if name.startswith("nvidia"):
                _bind(f"/dev/{name}", f"{dev}/{name}", readonly=False, device=True)
    _mkdirs(f"{dev}/pts")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.symlink("/proc/self/fd", f"{dev}/fd")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{dev}/{name}")
    if "/dev/shm" in spec.private:
        _bind(os.path.realpath(spec.private["/dev/shm"]), f"{dev}/shm", readonly=False)
    else:
        _mkdirs(f"{dev}/shm")
        mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m")


def _etc(root: str, spec: ViewSpec) -> None:
    etc = _target(root, "/etc")
    _mkdirs(etc)
    for name in ETC_RO:
        src = f"/etc/{name}"
        if os.path.exists(src):
            _bind(os.path.realpath(src), f"{etc}/{name}", readonly=True)
    files = {
        "passwd": f"root:x:0:0::/root:/bin/sh\nagent:x:{spec.uid}:{spec.gid}::{spec.home}:/bin/bash\n"
        "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nagent:x:{spec.gid}:\nnogroup:x:65534:\n",
        "hostname": f"{HOSTNAME}\n",
    }
    if not os.path.exists("/etc/hosts"):
        files["hosts"] = f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n"
    for name, text in files.items():
        with open(f"{etc}/{name}", "w") as fh:
            fh.write(text)


def build(spec: ViewSpec, root: str = str(ASSEMBLY)) -> None:
    """Assemble the view under ``root`` (in a private mount namespace), then make it the
    root of this namespace with the old root detached. Caller: root, after unshare(NEWNS)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for dst, src, kind in _plan(spec):
        target = _target(root, dst)
        if kind == "link":
            _mkdirs(os.path.dirname(target))
            os.symlink(src, target)  # type: ignore[arg-type]
        elif kind == "tmpfs":
            _mkdirs(target)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=1g")
        else:
            _bind(src, target, readonly=kind == "ro")  # type: ignore[arg-type]
    _dev(root, spec)
    _etc(root, spec)
    if spec.gpu and os.path.exists("/dev/nvidiactl"):  # the CUDA driver reads PCI topology there
        _bind("/sys", _target(root, "/sys"), readonly=True)
    _mkdirs(_target(root, "/proc"))
    os.chdir(root)
    pivot_root(".", ".")  # the old root is stacked under the new one ...
    umount(".")  # ... and detached: no path leads back to the host tree
    os.chdir("/")
    mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, recursive=False)


def mount_proc() -> None:
    """The pid namespace's own procfs (call from its pid 1)."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid`` for good: no groups, no capabilities, no way back through setuid files."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def prepare_assembly() -> None:
    ASSEMBLY.mkdir(parents=True, exist_ok=True)
    os.chmod(ASSEMBLY.parent, 0o755)


# -- per-run uids --------------------------------------------------------------------------------

UID_LOCKS = Path("/run/onegc-audit/uids")


class UidLease:
    """A uid no other live run holds: ``base + slot``, the slot taken by an flock held for the
    run's lifetime (a killed harness releases it with its last fd). A uid that still owns a
    live process (a crashed run's survivor) is skipped."""

    def __init__(self, base: int, slots: int = 1000) -> None:
        UID_LOCKS.mkdir(parents=True, exist_ok=True)
        busy = _uids_in_use()
        for slot in range(slots):
            uid = base + slot
            if uid in busy:
                continue
            fh = open(UID_LOCKS / f"{uid}.lock", "w")  # noqa: SIM115 - held for the run
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self.uid, self._fh = uid, fh
            return
        raise OSError(f"no free agent uid in {base}..{base + slots - 1}")

    def release(self) -> None:
        self._fh.close()


def _uids_in_use() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        out.add(int(line.split()[1]))
                        break
        except OSError:
            pass
    return out


# -- a one-shot sandbox for a command (the evaluator's model process) -----------------------------


def run_in_view(spec: ViewSpec, argv: list[str], cwd: str, env: dict[str, str]) -> int:
    """Run ``argv`` inside a fresh view with new mount, pid, network (loopback only), IPC, UTS
    and cgroup namespaces, as ``spec.uid``; returns its exit status. Needs root."""
    prepare_assembly()
    pid = os.fork()
    if pid == 0:
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
            loopback_up()
            sethostname(HOSTNAME)
            build(spec)
            init = os.fork()  # pid 1 of the new pid namespace: its death kills everything in it
            if init == 0:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                mount_proc()
                child = os.fork()
                if child == 0:
                    drop_privileges(spec.uid, spec.gid)
                    os.chdir(cwd)
                    os.execvpe(argv[0], argv, env)
                while True:
                    p, st = os.waitpid(-1, 0)
                    if p == child:
                        os._exit(os.waitstatus_to_exitcode(st) & 0xFF)
            _, st = os.waitpid(init, 0)
            os._exit(os.waitstatus_to_exitcode(st) & 0xFF)
        except BaseException as exc:  # the child must never return into the caller's code
            os.write(2, f"onegc sandbox: {exc}\n".encode())
            os._exit(126)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> None:
    """``python -m onegc.harness.view --rw DIR [--ro DIR] [--uid N] [--cwd DIR] -- CMD ...``:
    CMD in a deny-by-default view holding the runtime read-only and the ``--rw`` folders."""
    ap = argparse.ArgumentParser(prog="onegc.harness.view")
    ap.add_argument("--ro", action="append", default=[])
    ap.add_argument("--rw", action="append", default=[])
    ap.add_argument("--uid", type=int, default=65534)
    ap.add_argument("--gid", type=int, default=None)
    ap.add_argument("--cwd", default="/")
    ap.add_argument("cmd", nargs="+")
    args = ap.parse_args(argv)
    scratch = [d for d in args.rw if os.path.isdir(d)]
    gid = args.uid if args.gid is None else args.gid
    spec = ViewSpec(ro=runtime_paths() + args.ro, rw=scratch, uid=args.uid, gid=gid, home=args.cwd)
    if os.geteuid() != 0:
        sys.exit("onegc sandbox: needs root (namespaces and mounts)")
    env = {k: v for k, v in os.environ.items() if k != "ONEGC_EVAL_SANDBOX"}
    sys.exit(run_in_view(spec, args.cmd, args.cwd, env))


def command() -> list[str]:
    """The argv prefix that runs a command in a view (what the evaluator is given)."""
    return [sys.executable, "-m", "onegc.harness.view"]


if __name__ == "__main__":
    main()
