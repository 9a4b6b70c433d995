"""The file sensor with process attribution: fanotify on the run's own superblocks.

Why: inotify names no process and loses events (queue overflow, the new-directory watch race),
so a write by any host process in a watched place was cited against the run. Here each of the
run's writable places (workspace, scratch) is a filesystem of its own (harness/runfs.py: a
fresh ext4 on a loop device, mounted over the folder). A filesystem mark (FAN_MARK_FILESYSTEM)
with FAN_UNLIMITED_QUEUE sees every change on those superblocks, from any mount namespace,
with nothing lost, and nothing else of the machine; each event names its folder and entry
(FAN_REPORT_DFID_NAME; a new folder's own handle too, so its path is known even if it is gone
before its events are read) and its pid, and a pidfd (FAN_REPORT_PIDFD) tells the process's
cgroup even after it exited (PIDFD_GET_INFO), so membership of the run is checked per event:
``in_run`` true (the run's cgroup), false (another process, e.g. a host process writing in the
run's folder: kept, never cited), or null with ``attribution = 'none'`` when the process was
reaped before the event was read and never seen in the run's cgroup (counted, never cited).
A root that is not a superblock of its own is refused: marking it would watch its whole disk.
research/sandbox-by-construction.md section 2 measured this recipe.

Usage (by the harness): python -m onegc.harness.fanwatch RUN_DIR PARENT_PID CGROUP_DIR ROOTS_JSON
ROOTS_JSON: [[label, path], ...]. Prints {"ready": true, "pid": N} once marked (or
{"ready": false, "error": ...}) and {"counts": {...}} after SIGTERM, when the queue is drained.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import struct
import sys
from collections import Counter
from pathlib import Path

from onegc.evidence.journal import Journal, journal_path
from onegc.harness.kernel import become_sensor, fstatfs, libc

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_NOTIF = 0x1, 0x2, 0x0
FAN_UNLIMITED_QUEUE, FAN_REPORT_PIDFD = 0x10, 0x80
FAN_REPORT_DFID_NAME_TARGET = 0x200 | 0x400 | 0x800 | 0x1000  # FID, DIR_FID, NAME, TARGET_FID
FAN_MARK_ADD, FAN_MARK_FILESYSTEM = 0x1, 0x100
FAN_MODIFY, FAN_ATTRIB, FAN_CLOSE_WRITE = 0x2, 0x4, 0x8
FAN_CREATE, FAN_DELETE, FAN_DELETE_SELF = 0x100, 0x200, 0x400
FAN_Q_OVERFLOW, FAN_RENAME, FAN_ONDIR = 0x4000, 0x10000000, 0x40000000
FAN_NOPIDFD, FAN_EPIDFD = -1, -2
INFO_FID, INFO_DFID_NAME, INFO_PIDFD, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME = 1, 2, 4, 10, 12
MASK = FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_DELETE | FAN_RENAME | FAN_ATTRIB | FAN_DELETE_SELF | FAN_ONDIR
NAMES = (
    (FAN_CREATE, "create"),
    (FAN_MODIFY, "modify"),
    (FAN_CLOSE_WRITE, "close_write"),
    (FAN_ATTRIB, "attrib"),
    (FAN_DELETE, "delete"),
    (FAN_DELETE_SELF, "delete_self"),
)  # a rename is written as the moved_from / moved_to pair inotify readers know
META = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid (24 bytes)
INFO = struct.Struct("=BBH")
PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info VER0, 64 bytes)
PIDFD_INFO_CGROUPID, PIDFD_INFO_EXIT = 0x4, 0x8

libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def pidfd_cgroup(pidfd: int) -> int | None:
    """The cgroup id of a pidfd's process, alive or exited (kernel >= 6.15), else None."""
    buf = bytearray(struct.pack("=Q", PIDFD_INFO_CGROUPID | PIDFD_INFO_EXIT) + bytes(56))
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf, True)
    except OSError:
        return None
    mask, cgid = struct.unpack_from("=QQ", buf)
    return cgid if mask & PIDFD_INFO_CGROUPID else None


class Attributor:
    """Is a pid one of the run's processes? By its cgroup: the run's cgroup or one below it."""

    def __init__(self, cgroup_dir: str) -> None:
        self.cgroup_dir = cgroup_dir
        self.ids: set[int] = set()
        self.other_ids: set[int] = set()
        self._rescan()
        root = Path(cgroup_dir)
        for parent in root.parents:
            if (parent / "cgroup.controllers").exists() and not (parent.parent / "cgroup.controllers").exists():
                self.rel = "/" + str(root.relative_to(parent))
                break
        else:
            self.rel = str(root)

    def _rescan(self) -> None:
        for dirpath, _dirs, _files in os.walk(self.cgroup_dir):
            try:
                self.ids.add(os.stat(dirpath).st_ino)
            except OSError:
                pass

    def by_cgroup_id(self, cgid: int) -> bool:
        if cgid not in self.ids and cgid not in self.other_ids:
            self._rescan()  # a cgroup made below the run's since the last look
            if cgid not in self.ids:
                self.other_ids.add(cgid)  # cgroup ids are never reused: one look per foreign cgroup
        return cgid in self.ids

    def run_pids(self) -> set[int]:
        """The processes in the run's cgroups now (cgroup.procs of each)."""
        out: set[int] = set()
        for dirpath, _dirs, _files in os.walk(self.cgroup_dir):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    out.update(int(p) for p in fh.read().split())
            except (OSError, ValueError):
                pass
        return out

    def by_proc(self, pid: int) -> bool | None:
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        for line in lines:  # the unified hierarchy's line; a hybrid layout lists v1 ones too
            if line.startswith("0::"):
                path = line[3:]
                return path == self.rel or path.startswith(self.rel + "/")
        return None


class DirPaths:
    """Directory file handle -> path, by open_by_handle_at on the superblock's mount."""

    def __init__(self) -> None:
        self.mounts: dict[bytes, tuple[int, str]] = {}  # fsid -> (mount fd, label)
        self.paths: dict[bytes, str] = {}

    def add(self, path: str, label: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fsid = struct.pack("=ii", *fstatfs(fd).f_fsid)
        self.mounts[fsid] = (fd, label)

    def resolve(self, fsid: bytes, handle: bytes) -> tuple[str, str]:
        mfd, label = self.mounts.get(fsid, (-1, "?"))
        key = fsid + handle
        p = self.paths.get(key)
        if p is None:
            fd = libc.open_by_handle_at(mfd, handle, os.O_PATH | os.O_CLOEXEC)
            if fd < 0:  # the folder is gone already (a deleted temp dir): say so, keep the event
                return label, f"<gone:{errno.errorcode.get(ctypes.get_errno(), '?')}>"
            p = os.readlink(f"/proc/self/fd/{fd}")
            os.close(fd)
            if len(self.paths) > 200_000:
                self.paths.clear()
            self.paths[key] = p
        return label, p

    def learn(self, fid: tuple[bytes, bytes, str], path: str) -> None:
        """A folder's path from the event that made it (its parent's path and its name): the
        files it held are named even if it is gone before its events are read."""
        self.paths[fid[0] + fid[1]] = path

    def forget(self) -> None:
        """A directory was deleted or renamed: cached paths below it are stale (resolving
        again costs one lookup per folder; finding them would cost a scan of the cache)."""
        self.paths.clear()


def _dfid_name(rec: bytes) -> tuple[bytes, bytes, str]:
    """(fsid, file handle, name) of a DFID_NAME record: hdr(4) fsid(8) {u32 bytes; s32 type; handle} name."""
    hbytes = struct.unpack_from("=I", rec, 12)[0]
    name = rec[20 + hbytes :].split(b"\0", 1)[0]
    return rec[4:12], rec[12 : 20 + hbytes], os.fsdecode(name)


class FanWatcher:
    def __init__(self, run_dir: Path, cgroup_dir: str, roots: list[tuple[str, str]]) -> None:
        flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME_TARGET
        flags |= FAN_UNLIMITED_QUEUE | FAN_REPORT_PIDFD
        self.fan = _check(libc.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC), "fanotify_init")
        self.dirs = DirPaths()
        for label, path in roots:
            b = path.encode()
            _check(libc.fanotify_mark(self.fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, -100, b), "fanotify_mark")
            self.dirs.add(path, label)
        self.attrib = Attributor(cgroup_dir)
        self.journal = Journal(journal_path(run_dir, "file_events"), "file_events", flush_every_s=0.2)
        self.counts: Counter[str] = Counter()
        self.me = os.getpid()
        self.cookie = 0
        self.seen: dict[int, bool] = {}  # pid -> in the run, as last verified
        self.counts.update({k: 0 for k in ("events", "in_run", "foreign", "unattributed", "overflows")})

    def _who(self, pid: int, pidfd: int | None) -> tuple[bool | None, str]:
        """in_run and how it was told. A process reaped before its event was read has no pidfd
        and no /proc entry; if the run's cgroup held that pid earlier in the run (``seen``), the
        event is the run's ('seen'): only the run's mount namespaces reach these superblocks, so
        a foreign writer would need root on the host, via /proc/PID/root, on a recycled pid."""
        if pidfd is not None and pidfd >= 0:
            cgid = pidfd_cgroup(pidfd)
            os.close(pidfd)
            if cgid is not None:
                found = self.attrib.by_cgroup_id(cgid)
                self.seen[pid] = found
                return found, "pidfd"
        found = self.attrib.by_proc(pid)
        if found is not None:
            self.seen[pid] = found
            return found, "proc"
        if self.seen.get(pid):
            return True, "seen"
        return None, "none"

    def learn(self) -> None:
        """Note the pids the run's cgroup holds now (each batch and each idle tick)."""
        for pid in self.attrib.run_pids():
            self.seen[pid] = True

    def read(self, timeout_ms: int) -> bool:
        """Read and journal one batch; False when the queue was empty for ``timeout_ms``."""
        self.learn()
        try:
            buf = os.read(self.fan, 1 << 20)
        except BlockingIOError:
            select.select([self.fan], [], [], timeout_ms / 1000)
            return False
        self.handle(buf)
        return True

    def handle(self, buf: bytes) -> None:
        off, n = 0, len(buf)
        while off + META.size <= n:
            elen, _v, _r, mlen, mask, fd, pid = META.unpack_from(buf, off)
            end, i = off + elen, off + mlen
            off = end
            if fd >= 0:
                os.close(fd)
            if mask & FAN_Q_OVERFLOW:
                self.counts["overflows"] += 1
                continue
            pidfd, names = None, {}
            while i + INFO.size <= end:
                itype, _pad, ilen = INFO.unpack_from(buf, i)
                if itype == INFO_PIDFD:
                    pidfd = struct.unpack_from("=i", buf, i + 4)[0]
                elif itype in (INFO_FID, INFO_DFID_NAME, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME):
                    names[itype] = _dfid_name(buf[i : i + ilen])
                i += ilen if ilen else end
            if pid == self.me:  # our own handle lookups
                if pidfd is not None and pidfd >= 0:
                    os.close(pidfd)
                continue
            in_run, how = self._who(pid, pidfd)
            is_dir = bool(mask & FAN_ONDIR)
            common = {"is_dir": is_dir, "pid": pid, "in_run": in_run, "attribution": how}
            if mask & FAN_RENAME:
                self.cookie += 1
                for itype, ev in ((INFO_OLD_DFID_NAME, "moved_from"), (INFO_NEW_DFID_NAME, "moved_to")):
                    if itype in names:
                        label, path = self._path(names[itype])
                        self._write(label, path, ev, self.cookie, common)
                if is_dir:
                    self.dirs.forget()
                    if INFO_FID in names and INFO_NEW_DFID_NAME in names:
                        self.dirs.learn(names[INFO_FID], self._path(names[INFO_NEW_DFID_NAME])[1])
            # A change names the entry's folder and name; a folder's own deletion only the folder.
            # A file's self events without a name (its nlink change, its delete_self) come after
            # its last link went, which its folder's delete event already recorded.
            where = names.get(INFO_DFID_NAME) or (names.get(INFO_FID) if is_dir else None)
            if where is not None and (mask & ~(FAN_RENAME | FAN_ONDIR)):
                label, path = self._path(where)
                for bit, ev in NAMES:
                    if mask & bit:
                        self._write(label, path, ev, 0, common)
                if is_dir and mask & FAN_CREATE and INFO_FID in names:  # a deleted folder's handle
                    self.dirs.learn(names[INFO_FID], path)  # is never reused: no need to forget it

    def _path(self, dfid: tuple[bytes, bytes, str]) -> tuple[str, str]:
        fsid, handle, name = dfid
        label, d = self.dirs.resolve(fsid, handle)
        return label, os.path.join(d, name) if name and name != "." else d

    def _write(self, label: str, path: str, event: str, cookie: int, common: dict) -> None:
        self.journal.write(root=label, path=path, event=event, cookie=cookie, **common)
        self.counts["events"] += 1
        self.counts[{True: "in_run", False: "foreign", None: "unattributed"}[common["in_run"]]] += 1


def main() -> None:
    run_dir, parent, cgroup_dir = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    roots = [(label, path) for label, path in json.loads(sys.argv[4])]
    stopping = become_sensor(parent)
    try:
        for label, path in roots:
            if not os.path.ismount(path):  # a superblock of its own, not a folder of its disk's
                raise OSError(errno.EXDEV, f"{label} ({path}) is not a filesystem of its own")
        w = FanWatcher(run_dir, cgroup_dir, roots)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        sys.exit(3)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    while not stopping.is_set():
        if not w.read(200):
            w.journal.flush()  # a burst is over (or 200 ms passed): its records reach the OS
    while w.read(50):  # drain what the kernel still holds
        pass
    w.journal.close()
    print(json.dumps({"counts": dict(w.counts)}), flush=True)


if __name__ == "__main__":
    main()
