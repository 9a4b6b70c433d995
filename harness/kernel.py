"""Thin ctypes wrappers for the few Linux calls the standard library lacks."""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import threading

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP = 0x08000000, 0x04000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME = 0x1, 0x2, 0x4, 0x8, 0x400
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
MNT_DETACH = 2
SYS_PIDFD_GETFD = 438
SYS_PIVOT_ROOT, SYS_MOUNT_SETATTR = 155, 442
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long), ("blocks", ctypes.c_ulong * 5),
                ("f_fsid", ctypes.c_int * 2), ("rest", ctypes.c_long * 8)]  # fmt: skip


TMPFS_MAGIC = 0x01021994


def fstatfs(fd: int) -> Statfs:
    """statfs(2) of an open file: its filesystem's type (f_type) and id (f_fsid), which
    os.statvfs does not give."""
    st = Statfs()
    _check(libc.fstatfs(fd, ctypes.byref(st)), "fstatfs")
    return st


def become_sensor(parent: int) -> threading.Event:
    """A sensor process's start: it dies with the harness that started it (PDEATHSIG, and at
    once if that harness is gone already); SIGTERM sets the returned flag, asking it to drain
    what the kernel still holds and stop."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(1)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


def prctl(option: int, arg: int) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def _enc(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    ret = libc.mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data))
    _check(ret, f"mount {source} -> {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(libc.umount2(target.encode(), flags), f"umount {target}")


class _MountAttr(ctypes.Structure):
    """struct mount_attr (MOUNT_ATTR_SIZE_VER0 = 32 bytes)."""

    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def mount_setattr(target: str, attr_set: int, *, recursive: bool) -> None:
    """Set mount attributes (read-only, nosuid...) on a mount, and with ``recursive`` on every
    mount below it in one call (a remount would leave submounts writable)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    ret = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, target.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr))
    _check(ret, f"mount_setattr {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(libc.syscall(SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def sethostname(name: str) -> None:
    _check(libc.sethostname(name.encode(), len(name)), "sethostname")


def pidfd_getfd(pid: int, fd: int) -> int:
    """Copy fd `fd` of process `pid` into this process (non-inheritable)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _check(libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0), "pidfd_getfd")
    finally:
        os.close(pidfd)


def loopback_up() -> None:
    """Bring `lo` up in the current (fresh) network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def is_enoent(exc: OSError) -> bool:
    return exc.errno in (errno.ENOENT, errno.ESRCH)
