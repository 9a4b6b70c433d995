"""The kernel's process events (proc connector): every fork, exec and exit on the machine,
with parent and kernel timestamp, filtered here to one process tree by fork lineage.

Why: seccomp sees only exec calls. A subshell that forks without exec, and whether an exec
really started (the kernel's own EXEC event, emitted inside the exec before the new program
runs), come only from here. Measured in research/sandbox-by-construction.md §4: nothing lost
with a 16 MiB buffer while the reader keeps up; after ENOBUFS the lineage is resynced from
the run's cgroup.
"""

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from onegc.harness.cgroup import cgroup2_root

NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
NLMSG_DONE, PROC_CN_MCAST_LISTEN = 3, 1
FORK, EXEC, EXIT = 0x1, 0x2, 0x80000000
SO_RCVBUFFORCE = 33
NLHDR = struct.Struct("=IHHII")
CNMSG = struct.Struct("=IIIIHH")
PEV = struct.Struct("=IIQ")
FORK_BODY = struct.Struct("=IIII")  # parent pid, parent tgid, child pid, child tgid
EXEC_BODY = struct.Struct("=II")  # pid, tgid
EXIT_BODY = struct.Struct("=IIIIII")  # pid, tgid, exit_code (wait status), exit_signal, parent pid, parent tgid


@dataclass(frozen=True)
class ProcEvent:
    what: str
    """fork, exec or exit."""
    mono: float
    """CLOCK_MONOTONIC seconds (the kernel's timestamp): the harness's clock."""
    pid: int
    """The process (thread-group id) concerned: the child for a fork."""
    ppid: int = -1
    status: int | None = None
    """Wait status at exit."""


class Connector:
    """A subscription to the proc connector (root only; the host's pid and net namespaces)."""

    def __init__(self, rcvbuf: int = 16 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            pass
        self.sock.bind((0, CN_IDX_PROC))
        payload = struct.pack("=II", PROC_CN_MCAST_LISTEN, FORK | EXEC | EXIT)  # 6.6+: filtered by type
        cn = CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        self.sock.send(NLHDR.pack(NLHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn)
        self.sock.setblocking(False)
        self.overruns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> Iterator[ProcEvent]:
        """Every event queued now (never blocks). ENOBUFS (events lost) is counted."""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            yield from parse(data)


def parse(data: bytes) -> Iterator[ProcEvent]:
    off = 0
    while off + NLHDR.size + CNMSG.size + PEV.size <= len(data):
        length = NLHDR.unpack_from(data, off)[0]
        what, _cpu, ts = PEV.unpack_from(data, off + NLHDR.size + CNMSG.size)
        body = off + NLHDR.size + CNMSG.size + PEV.size
        mono = ts / 1e9
        if what == FORK:
            _ppid, ptgid, cpid, ctgid = FORK_BODY.unpack_from(data, body)
            if cpid == ctgid:  # a new process; a new thread has ctgid == ptgid
                yield ProcEvent("fork", mono, ctgid, ptgid)
        elif what == EXEC:
            _pid, tgid = EXEC_BODY.unpack_from(data, body)
            yield ProcEvent("exec", mono, tgid)
        elif what == EXIT:
            pid, tgid, code, _sig, _ppid, ptgid = EXIT_BODY.unpack_from(data, body)
            if pid == tgid:  # the process, not one of its threads
                yield ProcEvent("exit", mono, tgid, ptgid, code)
        off += max((length + 3) & ~3, NLHDR.size)


class Lineage:
    """The processes of one tree (host pids), followed by fork and exit events."""

    def __init__(self, root: int, cgroup_procs: Path | None = None) -> None:
        self.pids = {root}
        self.cgroup_procs = cgroup_procs

    def feed(self, ev: ProcEvent) -> bool:
        """Update the tree; True when the event concerns one of its processes."""
        if ev.what == "fork":
            if ev.ppid in self.pids:
                self.pids.add(ev.pid)
                return True
            self.pids.discard(ev.pid)  # a reused pid now belongs to someone else
            return False
        if ev.what == "exit":
            mine = ev.pid in self.pids
            self.pids.discard(ev.pid)
            return mine
        return ev.pid in self.pids

    def resync(self) -> None:
        """After lost events: the run's cgroup holds exactly its live processes."""
        if self.cgroup_procs is None:
            return
        try:
            self.pids |= {int(p) for p in self.cgroup_procs.read_text().split()}
        except OSError:
            pass


def cgroup_of(pid: int) -> str | None:
    """The cgroup v2 path of `pid` (as in /proc/PID/cgroup, `0::/path`), None if unknown."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def cgroup_procs_file(cgroup: str | None) -> Path | None:
    if not cgroup or cgroup == "/":
        return None
    root = cgroup2_root()
    path = root / cgroup.lstrip("/") / "cgroup.procs" if root else None
    return path if path and path.exists() else None


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
