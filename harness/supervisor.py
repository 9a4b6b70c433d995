"""The seccomp supervisor: a process of its own that answers every notification of the
agent's tree and journals execs and network attempts.

Its own process, not a harness thread: the GIL of a busy harness must not stall the
agent's syscalls, and killing it must be testable (the tree then fails closed: every
later exec or connect gets ENOSYS, since nobody else holds the listener fd).

Usage (by the harness): python -m onegc.harness.supervisor RUN_DIR CTL_FD ACK_FD PARENT_PID
"""

import json
import os
import select
import signal
import sys
from collections import Counter
from pathlib import Path

from onegc.evidence.journal import Journal, journal_path
from onegc.harness import seccomp as sc
from onegc.harness.kernel import PR_SET_PDEATHSIG, pidfd_getfd, prctl

EXEC_NRS = {sc.NR["execve"]: "execve", sc.NR["execveat"]: "execveat"}
NET_NRS = {sc.NR["connect"]: "connect", sc.NR["sendto"]: "sendto"}


def _status(tid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{tid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "surrogateescape") for a in fh.read().split(b"\0")[:-1]]
    except OSError:
        return []


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class Supervisor:
    def __init__(self, run_dir: Path, listener: int) -> None:
        self.fd = listener
        # Flushed whenever the queue runs dry (see serve): no write syscall per exec in a burst.
        self.execs = Journal(journal_path(run_dir, "execs"), "execs", flush_every_s=1.0)
        self.net = Journal(journal_path(run_dir, "net_attempts"), "net_attempts", flush_every_s=1.0)
        self.counts: Counter[str] = Counter()

    def handle(self, n: sc.Notification) -> tuple[Journal, dict] | None:
        """Read what the record needs while the caller waits; the record itself is written
        after the reply (serve), off the path of the agent's syscall."""
        try:
            mem = sc.ProcMem(n.tid)
        except OSError:
            self.counts["target_gone"] += 1
            return None
        try:
            if n.nr in EXEC_NRS:
                return self._exec(n, mem)
            if n.nr in NET_NRS:
                return self._net(n, mem)
            return None
        except OSError:
            # The target died or exec'd mid-read; ID_VALID tells which. Nothing ran.
            self.counts["target_gone" if not sc.id_valid(self.fd, n.id) else "read_errors"] += 1
            return None
        finally:
            mem.close()

    def _exec(self, n: sc.Notification, mem: sc.ProcMem) -> tuple[Journal, dict] | None:
        syscall = EXEC_NRS[n.nr]
        path_arg, argv_arg = (n.args[0], n.args[1]) if syscall == "execve" else (n.args[1], n.args[2])
        path = mem.cstring(path_arg) if path_arg else ""
        argv = mem.argv(argv_arg)
        status = _status(n.tid)
        cwd = _readlink(f"/proc/{n.tid}/cwd") or ""
        if syscall == "execveat":
            dirfd = ctypes_int(n.args[0])
            if not path and n.args[4] & sc.AT_EMPTY_PATH:
                path = _readlink(f"/proc/{n.tid}/fd/{dirfd}") or ""
            elif not path.startswith("/") and dirfd != sc.AT_FDCWD:
                path = os.path.join(_readlink(f"/proc/{n.tid}/fd/{dirfd}") or "", path)
        if not sc.id_valid(self.fd, n.id):
            self.counts["target_gone"] += 1
            return None
        resolved = path if path.startswith("/") else os.path.join(cwd, path)
        probe = not os.path.exists(f"/proc/{n.tid}/root{resolved}")  # before the reply: it may exit
        self.counts["execs"] += 1
        return self.execs, dict(
            pid=int(status.get("Tgid", n.tid)),
            tid=n.tid,
            ppid=int(status.get("PPid", -1)),
            uid=int(status.get("Uid", "-1").split()[0]),
            syscall=syscall,
            path=resolved,
            argv=argv,
            cwd=cwd,
            probe=probe,
        )

    def _net(self, n: sc.Notification, mem: sc.ProcMem) -> tuple[Journal, dict] | None:
        syscall = NET_NRS[n.nr]
        addr, length = (n.args[1], n.args[2]) if syscall == "connect" else (n.args[4], n.args[5])
        parsed = sc.parse_sockaddr(mem.read(addr, min(length, 128))) if addr else None
        if parsed is None:
            self.counts["other_family"] += 1
            return None
        family, address, port = parsed
        if sc.is_local(address):
            self.counts["loopback"] += 1
            return None
        status = _status(n.tid)
        pid = int(status.get("Tgid", n.tid))
        if not sc.id_valid(self.fd, n.id):
            self.counts["target_gone"] += 1
            return None
        self.counts["net_attempts"] += 1
        return self.net, dict(
            pid=pid,
            tid=n.tid,
            ppid=int(status.get("PPid", -1)),
            syscall=syscall,
            family=family,
            address=address,
            port=port,
            argv=_cmdline(pid),
            exe=_readlink(f"/proc/{pid}/exe"),
        )

    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            events = poller.poll(0)
            if not events:  # idle: what was journaled reaches the OS before we wait
                self.execs.flush()
                self.net.flush()
                events = poller.poll()
            if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events) and not any(
                ev & select.POLLIN for _, ev in events
            ):
                return  # no process uses the filter any more
            n = sc.receive(self.fd)
            if n is None:
                self.counts["target_gone"] += 1
                continue
            record = None
            try:
                record = self.handle(n)
            finally:
                sc.respond_continue(self.fd, n.id)
            if record is not None:
                journal, fields = record
                journal.write(**fields)

    def close(self) -> None:
        self.execs.close()
        self.net.close()


def ctypes_int(value: int) -> int:
    """A syscall argument as a signed 32-bit int (dirfd AT_FDCWD is -100)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def main() -> None:
    run_dir, ctl_fd, ack_fd, parent = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the harness ends us by the tree emptying
    line = os.read(ctl_fd, 64).decode().split()
    listener = pidfd_getfd(int(line[0]), int(line[1]))
    os.write(ack_fd, b"ok\n")
    os.close(ctl_fd)
    os.close(ack_fd)
    sup = Supervisor(run_dir, listener)
    print(json.dumps({"ready": True}), flush=True)
    try:
        sup.serve()
    finally:
        sup.close()
        print(json.dumps({"counts": dict(sup.counts)}), flush=True)


if __name__ == "__main__":
    main()
