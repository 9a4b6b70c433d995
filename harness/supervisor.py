"""The seccomp supervisor: a process of its own that answers every notification of the
agent's tree and journals execs, network attempts and calls that would change a locked
file; beside it, the kernel's process events (proc connector) give every fork and the real
outcome of every exec.

An exec is recorded once its outcome is known: the kernel's EXEC event for that process
(emitted inside the exec, so queued before anything the new program does) means it started;
another exec call or the exit of the process without one means the kernel refused it. The
program is resolved in the caller's world (harness/resolve.py): through its fd table, cwd and
root, through the dynamic loader to the program it loads, and compared by content with the
system's programs, so a renamed copy is known for what it is.

Its own process, not a harness thread: the GIL of a busy harness must not stall the
agent's syscalls, and killing it must be testable (the tree then fails closed: every
later exec or connect gets ENOSYS, since nobody else holds the listener fd).

Usage (by the harness): python -m onegc.harness.supervisor RUN_DIR CTL_FD ACK_FD PARENT_PID
"""

import hashlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from onegc.evidence.journal import Journal, journal_path
from onegc.harness import proc_events as pe
from onegc.harness import resolve as rs
from onegc.harness import seccomp as sc
from onegc.harness.kernel import PR_SET_PDEATHSIG, pidfd_getfd, prctl

EXEC_NRS = {sc.NR["execve"]: "execve", sc.NR["execveat"]: "execveat"}
NET_NRS = {sc.NR["connect"]: "connect", sc.NR["sendto"]: "sendto"}
FILE_NRS = {sc.NR[name]: name for name in sc.FILE_OPS if name in sc.NR}
AT_SYMLINK_NOFOLLOW = 0x100
SYSTEM_BIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
HASH_LIMIT = 256 << 20
POLL_MS = 100
"""Process events are drained at least this often: the socket buffer holds the whole
machine's events, so a run without syscalls must not let it overflow."""


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


@dataclass
class PendingExec:
    """An exec call answered with CONTINUE whose outcome the kernel has not told yet."""

    fields: dict
    fd: int | None
    """The program (or script) file, opened in the caller's world before the reply."""
    t: float
    mono: float


def locked_files(run_dir: Path) -> tuple[str, list[str]]:
    """The workspace and locked files from the run's start record (written before the launch)."""
    try:
        for line in journal_path(run_dir, "harness_events").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "start":
                detail = rec.get("detail") or {}
                return detail.get("workspace") or "", list(detail.get("locked") or [])
    except (OSError, ValueError):
        pass
    return "", []


class ProgramIndex:
    """Content identity of programs: sha256 by inode (cached), and the system's programs by
    size, so a copy of pip or chmod under another name is recognised by its bytes."""

    def __init__(self, dirs: list[str]) -> None:
        self.hashes: dict[tuple, str | None] = {}
        self.by_size: dict[int, list[str]] = {}
        seen: set[tuple[int, int]] = set()
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                try:
                    st = e.stat()
                except OSError:
                    continue
                if not e.is_file() or not st.st_mode & 0o111 or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                self.by_size.setdefault(st.st_size, []).append(e.path)

    def digest(self, fd: int, st: os.stat_result) -> str | None:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self.hashes:
            self.hashes[key] = _hash_fd(fd) if st.st_size <= HASH_LIMIT else None
        return self.hashes[key]

    def same_as(self, st: os.stat_result, digest: str | None) -> str | None:
        """A system program with these bytes, other than the file itself."""
        if digest is None:
            return None
        for path in self.by_size.get(st.st_size, ()):
            try:
                other = os.stat(path)
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    return None  # the file is itself a system program
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if self.digest(fd, other) == digest:
                    return path
            finally:
                os.close(fd)
        return None


def loader_identities() -> dict[str, set]:
    """Inodes, sizes and hashes of the system's dynamic loaders (ld-linux*.so*, ld-musl*)."""
    out: dict[str, set] = {"inodes": set(), "sizes": set(), "sha256": set()}
    for d in ("/lib64", "/lib", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
              "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        try:
            names = [n for n in os.listdir(d) if rs.LOADER.match(n)]
        except OSError:
            continue
        for name in names:
            try:
                st = os.stat(os.path.join(d, name))
                fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                digest = _hash_fd(fd)
            finally:
                os.close(fd)
            out["inodes"].add((st.st_dev, st.st_ino))
            out["sizes"].add(st.st_size)
            out["sha256"].add(digest)
    return out


def _hash_fd(fd: int) -> str | None:
    h = hashlib.sha256()
    off = 0
    try:
        while chunk := os.pread(fd, 1 << 20, off):
            h.update(chunk)
            off += len(chunk)
    except OSError:
        return None
    return h.hexdigest()


class Supervisor:
    def __init__(self, run_dir: Path, listener: int, root_pid: int | None = None) -> None:
        self.fd = listener
        # Flushed whenever the queue runs dry (see serve): no write syscall per exec in a burst.
        self.execs = Journal(journal_path(run_dir, "execs"), "execs", flush_every_s=1.0)
        self.net = Journal(journal_path(run_dir, "net_attempts"), "net_attempts", flush_every_s=1.0)
        self.procs = Journal(journal_path(run_dir, "processes"), "processes", flush_every_s=1.0)
        self.file_ops = Journal(journal_path(run_dir, "file_ops"), "file_ops", flush_every_s=1.0)
        self.counts: Counter[str] = Counter()
        self.pending: dict[int, list[PendingExec]] = {}
        """Exec calls per process, in call order, whose outcome the kernel has not told yet."""
        self.cgroup = pe.cgroup_of(root_pid) if root_pid else None
        if self.cgroup == pe.cgroup_of(os.getpid()):  # the launcher has no cgroup of its own: membership unknown
            self.cgroup = None
        self.lineage = pe.Lineage(root_pid, pe.cgroup_procs_file(self.cgroup)) if root_pid else None
        self.connector: pe.Connector | None = None
        self.stop = threading.Event()
        if root_pid:
            try:
                self.connector = pe.Connector()
            except OSError:
                self.counts["proc_connector_unavailable"] += 1
        self.programs = ProgramIndex([str(Path(sys.executable).parent), *SYSTEM_BIN])
        self.loaders = loader_identities()
        workspace, locked = locked_files(run_dir)
        self.locked: dict[tuple, str] = {}
        self.locked_paths = [(os.path.join(workspace, rel), rel) for rel in locked]
        self.locked_in_view = False  # the agent's view may show them on another superblock (an overlay)
        for full, rel in self.locked_paths:
            try:
                st, parent = os.stat(full, follow_symlinks=False), os.stat(os.path.dirname(full))
            except OSError:
                continue
            self.locked[(st.st_dev, st.st_ino)] = rel
            self.locked[(parent.st_dev, parent.st_ino, os.path.basename(full))] = rel

    def _learn_locked_in_view(self, target: rs.Target) -> None:
        """The locked files as the agent's own view shows them (its workspace may be an overlay
        with other device and inode numbers than the host's), learnt at the first call that
        could change a file: that call is still held, so what it names is still the original."""
        self.locked_in_view = True
        for full, rel in self.locked_paths:
            st, parent = target.stat(full, follow=False), target.stat(os.path.dirname(full))
            if st is not None:
                self.locked[(st.st_dev, st.st_ino)] = rel
            if parent is not None:
                self.locked[(parent.st_dev, parent.st_ino, os.path.basename(full))] = rel

    def is_loader(self, fd: int) -> bool:
        """The dynamic loader, under any name or path: by inode, or by size and then content."""
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) in self.loaders["inodes"]:
            return True
        return st.st_size in self.loaders["sizes"] and self.programs.digest(fd, st) in self.loaders["sha256"]

    def in_run(self, tid: int) -> bool | None:
        if self.cgroup is None:
            return None
        cg = pe.cgroup_of(tid)
        return cg is not None and (cg == self.cgroup or cg.startswith(self.cgroup.rstrip("/") + "/"))

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
            if n.nr in FILE_NRS:
                return self._file_op(n, mem)
            return None
        except OSError:
            # The target died or exec'd mid-read; ID_VALID tells which. Nothing ran.
            self.counts["target_gone" if not sc.id_valid(self.fd, n.id) else "read_errors"] += 1
            return None
        finally:
            mem.close()

    def _exec(self, n: sc.Notification, mem: sc.ProcMem) -> tuple[Journal, dict] | None:
        opened: list[int] = []  # closed here if reading the target fails half-way
        try:
            return self._exec_call(n, mem, opened)
        except OSError:
            for fd in opened:
                os.close(fd)
            raise

    def _exec_call(self, n: sc.Notification, mem: sc.ProcMem, opened: list[int]) -> tuple[Journal, dict] | None:
        syscall = EXEC_NRS[n.nr]
        path_arg, argv_arg = (n.args[0], n.args[1]) if syscall == "execve" else (n.args[1], n.args[2])
        path = mem.cstring(path_arg) if path_arg else ""
        argv = mem.argv(argv_arg)
        status = _status(n.tid)
        target = rs.Target(n.tid)
        dirfd = ctypes_int(n.args[0]) if syscall == "execveat" else sc.AT_FDCWD
        empty = syscall == "execveat" and bool(n.args[4] & sc.AT_EMPTY_PATH)
        fd, program, via = target.open(path, dirfd, empty)
        opened += [fd] if fd is not None else []
        script, args = None, argv[1:]
        if fd is not None and self.is_loader(fd):
            at = rs.loader_program(argv)
            if at is not None:  # ld.so runs the program it is given: that is what started
                os.close(opened.pop())
                fd, program, _ = target.open(argv[at])
                opened += [fd] if fd is not None else []
                via, args = "loader", argv[at + 1 :]
        if fd is not None:
            if rs.shebang(fd) is not None:
                via, script = via or "interpreter", program
            else:
                at = rs.interpreter_script(program, [program, *args])
                if at is not None:
                    script, args = target.absolute(args[at - 1]), args[at:]
                    sfd = rs.open_in_root(n.tid, script)
                    if sfd is not None:
                        os.close(opened.pop())
                        fd = sfd
                        opened.append(fd)
        in_run = self.in_run(n.tid)
        if not sc.id_valid(self.fd, n.id):
            for f in opened:
                os.close(f)
            self.counts["target_gone"] += 1
            return None
        pid = int(status.get("Tgid", n.tid))
        fields = dict(
            pid=pid,
            tid=n.tid,
            ppid=int(status.get("PPid", -1)),
            uid=int(status.get("Uid", "-1").split()[0]),
            syscall=syscall,
            path=program if empty else target.absolute(path, dirfd),
            argv=argv,
            cwd=target.cwd,
            program=program if fd is not None else None,
            via=via,
            script=script,
            args=args,
            in_run=in_run,
        )
        # Taken before the reply: later than the kernel's event of any earlier exec of this
        # process, earlier than the event of this one (see proc_events).
        self.pending.setdefault(pid, []).append(PendingExec(fields, fd, time.time(), time.monotonic()))
        self.counts["execs"] += 1
        return None

    def _finish(self, p: PendingExec, outcome: str, exe: str | None) -> None:
        """Write an exec record now that its outcome is known."""
        f = p.fields
        # Without the kernel's word, a file that was not there cannot have started.
        probe = p.fd is None if outcome == "unknown" else outcome == "refused"
        digest = inode = same_as = None
        if p.fd is not None:
            try:
                st = os.fstat(p.fd)
                inode = f"{st.st_dev}:{st.st_ino}"
                if st.st_mode & 0o170000 == 0o100000:  # a regular file (an O_PATH fd of one too)
                    digest = self.programs.digest(p.fd, st)
                    same_as = self.programs.same_as(st, digest)
            except OSError:
                pass
            finally:
                os.close(p.fd)
        self.execs.write(t=p.t, mono=p.mono, **f, probe=probe, outcome=outcome, exe=exe, sha256=digest,
                         inode=inode, same_as=same_as)

    def _file_op(self, n: sc.Notification, mem: sc.ProcMem) -> tuple[Journal, dict] | None:
        """A call that could change a file: recorded when what it names is a locked file."""
        if not self.locked:
            return None
        syscall = FILE_NRS[n.nr]
        target = rs.Target(n.tid)
        if not self.locked_in_view:
            self._learn_locked_in_view(target)
        hit: tuple[str, str] | None = None
        for dirfd_i, path_i, follow in sc.FILE_OPS[syscall]:
            if path_i is None:  # fd-based (fchmod, fchown): the fd is the file
                st = target.stat("", ctypes_int(n.args[dirfd_i]))
                shown = rs._link(f"/proc/{n.tid}/fd/{ctypes_int(n.args[dirfd_i])}") or ""
                if st is not None and (st.st_dev, st.st_ino) in self.locked:
                    hit = (shown, self.locked[(st.st_dev, st.st_ino)])
                continue
            dirfd = ctypes_int(n.args[dirfd_i]) if dirfd_i is not None else sc.AT_FDCWD
            path = mem.cstring(n.args[path_i]) if n.args[path_i] else ""
            if isinstance(follow, int) and not isinstance(follow, bool):
                follow = not n.args[follow] & AT_SYMLINK_NOFOLLOW
            st = target.stat(path, dirfd, follow=bool(follow))
            full = target.absolute(path, dirfd) if path else (rs._link(f"/proc/{n.tid}/fd/{dirfd}") or "")
            if st is not None and (st.st_dev, st.st_ino) in self.locked:
                hit = (full, self.locked[(st.st_dev, st.st_ino)])
            elif path:
                parent = target.stat(os.path.dirname(full) or "/")
                key = (parent.st_dev, parent.st_ino, os.path.basename(full)) if parent else None
                if key in self.locked:  # the name of a locked file, whatever inode it has now
                    hit = (full, self.locked[key])
            if hit:
                break
        if hit is None:
            self.counts["file_ops_unlocked"] += 1
            return None
        status = _status(n.tid)
        pid = int(status.get("Tgid", n.tid))
        in_run = self.in_run(n.tid)
        if not sc.id_valid(self.fd, n.id):
            self.counts["target_gone"] += 1
            return None
        self.counts["file_ops_locked"] += 1
        return self.file_ops, dict(
            pid=pid,
            tid=n.tid,
            ppid=int(status.get("PPid", -1)),
            syscall=syscall,
            path=hit[0],
            locked=hit[1],
            argv=_cmdline(pid),
            exe=_readlink(f"/proc/{pid}/exe"),
            in_run=in_run,
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

    def proc_events(self) -> None:
        """Everything the kernel has queued about processes: lineage, exec outcomes.

        Drained after each reply and at least every POLL_MS, never on the path of a caller. An
        EXEC event at time ts is the start asked by the latest pending call of that process made
        before ts (calls are timed before their reply); its earlier calls were refused. An exit
        refuses every call made before it."""
        if self.connector is None or self.lineage is None:
            return
        lost = self.connector.overruns
        for ev in self.connector.drain():
            if not self.lineage.feed(ev):
                continue
            exe = _readlink(f"/proc/{ev.pid}/exe") if ev.what == "exec" else None
            calls = self.pending.get(ev.pid)
            if calls and ev.what in ("exec", "exit"):
                before = [c for c in calls if c.mono < ev.mono]
                for i, c in enumerate(before):
                    started = ev.what == "exec" and i == len(before) - 1
                    self._finish(c, "started" if started else "refused", exe if started else None)
                calls[: len(before)] = []
                if not calls:
                    del self.pending[ev.pid]
            self.procs.write(
                t=time.time() - (time.monotonic() - ev.mono), mono=ev.mono, event=ev.what, pid=ev.pid,
                ppid=ev.ppid, exe=exe, status=ev.status,
            )
            self.counts[f"proc_{ev.what}s"] += 1
        if self.connector.overruns > lost:
            self.lineage.resync()
            self._finish_all("unknown")  # their outcome may have been among the lost events

    def _finish_all(self, outcome: str) -> None:
        for pid in list(self.pending):
            for c in self.pending.pop(pid):
                self._finish(c, outcome, None)

    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self.stop.is_set():  # set when the harness died: the tree dies with it
            events = poller.poll(0)
            if not events:  # idle: what was journaled reaches the OS before we wait
                for j in (self.execs, self.net, self.procs, self.file_ops):
                    j.flush()
                events = poller.poll(POLL_MS)
            if not events:
                self.proc_events()
                continue
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
            self.proc_events()

    def finish_pending(self, wait_s: float = 2.0) -> None:
        """At the end: the last process events arrive, then every exec has its outcome."""
        end = time.monotonic() + wait_s
        while self.pending and self.connector is not None and time.monotonic() < end:
            select.select([self.connector.sock], [], [], 0.05)
            self.proc_events()
        if self.connector is not None:
            self.proc_events()
            self.counts["proc_events_lost"] = self.connector.overruns
        self._finish_all("unknown")

    def close(self) -> None:
        for j in (self.execs, self.net, self.procs, self.file_ops):
            j.close()
        if self.connector is not None:
            self.connector.close()


def ctypes_int(value: int) -> int:
    """A syscall argument as a signed 32-bit int (dirfd AT_FDCWD is -100)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def main() -> None:
    run_dir, ctl_fd, ack_fd, parent = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sup_stop = threading.Event()
    # Not SIGKILL: exec records wait for the kernel's word on their outcome, and those still
    # waiting when the harness dies must reach the journal (with outcome unknown) first.
    signal.signal(signal.SIGUSR1, lambda *_: sup_stop.set())
    prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    if os.getppid() != parent:
        sys.exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the harness ends us by the tree emptying
    line = os.read(ctl_fd, 64).decode().split()
    launcher = int(line[0])
    listener = pidfd_getfd(launcher, int(line[1]))
    # Subscribed to process events before the launcher may fork: no process of the tree is missed.
    sup = Supervisor(run_dir, listener, launcher)
    os.write(ack_fd, b"ok\n")
    os.close(ctl_fd)
    os.close(ack_fd)
    print(json.dumps({"ready": True}), flush=True)
    sup.stop = sup_stop
    try:
        sup.serve()
        sup.finish_pending(wait_s=0.2 if sup_stop.is_set() else 2.0)
    finally:
        sup.close()
        print(json.dumps({"counts": dict(sup.counts)}), flush=True)


if __name__ == "__main__":
    main()
