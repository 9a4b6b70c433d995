"""Seccomp user notification: the exec and network-attempt sensor.

The recipe measured in research/sandbox-feasibility.md: a pyseccomp-built filter loaded
with a raw seccomp() call (NEW_LISTENER|WAIT_KILLABLE_RECV, which libseccomp cannot set),
the listener fd handed over with pidfd_getfd, zeroed receive buffers, ID_VALID after every
/proc read, and decisions that never block. Every decision is CONTINUE: this sensor records;
the network namespace, not seccomp, is what stops egress (a CONTINUE can be raced).
"""

import ctypes
import errno
import fcntl
import ipaddress
import os
import struct
import tempfile

import pyseccomp as sc

from onegc.harness.kernel import PR_SET_NO_NEW_PRIVS, libc, prctl

SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
FLAG_NEW_LISTENER = 1 << 3
FLAG_WAIT_KILLABLE_RECV = 1 << 5
IOCTL_RECV = 0xC0502100
IOCTL_SEND = 0xC0182101
IOCTL_ID_VALID = 0x40082102
RESP_FLAG_CONTINUE = 1
NOTIF_SIZE, RESP_SIZE = 80, 24
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000

NOTIFIED = ("execve", "execveat", "connect")
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
# Calls that change a file's content, mode, owner, times or name without opening it for
# writing, by the (dirfd arg, path arg, follow) of each file they name: follow is True/False,
# or the index of the flags argument (AT_SYMLINK_NOFOLLOW); a None path means the fd arg is
# the file. Rare in training and shell work, so notifying them costs little; the supervisor
# records those that name a locked file, whatever program makes them.
FILE_OPS: dict[str, tuple[tuple[int | None, int | None, bool | int], ...]] = {
    "chmod": ((None, 0, True),),
    "fchmod": ((0, None, True),),
    "fchmodat": ((0, 1, True),),
    "fchmodat2": ((0, 1, 3),),
    "chown": ((None, 0, True),),
    "lchown": ((None, 0, False),),
    "fchown": ((0, None, True),),
    "fchownat": ((0, 1, 4),),
    "truncate": ((None, 0, True),),
    "rename": ((None, 0, False), (None, 1, False)),
    "renameat": ((0, 1, False), (2, 3, False)),
    "renameat2": ((0, 1, False), (2, 3, False)),
    "link": ((None, 0, False), (None, 1, False)),
    "linkat": ((0, 1, False), (2, 3, False)),
    "unlink": ((None, 0, False),),
    "unlinkat": ((0, 1, False),),
    "utime": ((None, 0, True),),
    "utimes": ((None, 0, True),),
    "futimesat": ((0, 1, True),),
    "utimensat": ((0, 1, 3),),
}


def _nr(name: str) -> int | None:
    try:
        return sc.resolve_syscall(sc.system_arch(), name)
    except (ValueError, RuntimeError):
        return None


NR = {name: nr for name in (*NOTIFIED, "sendto", *FILE_OPS) if (nr := _nr(name)) is not None and nr >= 0}


def build_filter_bpf() -> bytes:
    """Notify exec, connect, sendto-with-address and FILE_OPS; refuse io_uring and foreign ABIs.

    io_uring would let a connect skip seccomp entirely; a 32-bit `int 0x80` syscall would
    dodge the native-arch rules, so foreign ABIs get ENOSYS instead of silently passing.
    """
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.ENOSYS))
    for name in NOTIFIED:
        f.add_rule(sc.NOTIFY, name)
    for name in FILE_OPS:
        if name in NR:
            f.add_rule(sc.NOTIFY, name)
    f.add_rule(sc.NOTIFY, "sendto", sc.Arg(4, sc.NE, 0))
    for name in IO_URING:
        f.add_rule(sc.ERRNO(errno.ENOSYS), name)
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_with_listener(bpf: bytes) -> int:
    """Install the filter on the calling thread's process; returns the listener fd."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    for flags in (FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV, FLAG_NEW_LISTENER):
        fd = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
        if fd >= 0:
            return fd
        if ctypes.get_errno() != errno.EINVAL:
            break
    err = ctypes.get_errno()
    raise OSError(err, f"seccomp(NEW_LISTENER): {os.strerror(err)}")


class Notification:
    """One decoded seccomp_notif."""

    __slots__ = ("id", "tid", "nr", "args")

    def __init__(self, raw: bytes) -> None:
        self.id, self.tid, _flags, self.nr, _arch, _ip = struct.unpack_from("=QIIiIQ", raw)
        self.args = struct.unpack_from("=6Q", raw, 32)


def receive(fd: int) -> Notification | None:
    """Block for the next notification; None when the target vanished (ENOENT)."""
    buf = bytearray(NOTIF_SIZE)  # must be zeroed every time, or the kernel says EINVAL
    try:
        fcntl.ioctl(fd, IOCTL_RECV, buf, True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINTR):
            return None
        raise
    return Notification(bytes(buf))


def id_valid(fd: int, notif_id: int) -> bool:
    try:
        fcntl.ioctl(fd, IOCTL_ID_VALID, struct.pack("=Q", notif_id))
        return True
    except OSError:
        return False


def respond_continue(fd: int, notif_id: int) -> None:
    try:
        fcntl.ioctl(fd, IOCTL_SEND, struct.pack("=QqiI", notif_id, 0, 0, RESP_FLAG_CONTINUE))
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: the syscall was interrupted; it will come again
            raise


class ProcMem:
    """Reads the target's memory page by page (a read across an unmapped page fails)."""

    def __init__(self, tid: int) -> None:
        self.fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY)

    def close(self) -> None:
        os.close(self.fd)

    def read(self, addr: int, size: int) -> bytes:
        return os.pread(self.fd, size, addr)

    def cstring(self, addr: int, limit: int = 16384) -> str:
        out = bytearray()
        while len(out) < limit:
            chunk = os.pread(self.fd, 4096 - (addr % 4096), addr)
            if not chunk:
                break
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
            addr += len(chunk)
        return out.decode("utf-8", "surrogateescape")

    def argv(self, addr: int, max_items: int = 1024, max_bytes: int = 65536) -> list[str]:
        items: list[str] = []
        total = 0
        while addr and len(items) < max_items and total < max_bytes:
            (ptr,) = struct.unpack("=Q", self.read(addr, 8))
            if ptr == 0:
                break
            s = self.cstring(ptr, max_bytes - total)
            items.append(s)
            total += len(s) + 1
            addr += 8
        return items


def parse_sockaddr(raw: bytes) -> tuple[str, str, int] | None:
    """(family, address, port) for AF_INET/AF_INET6, None for anything else."""
    if len(raw) < 2:
        return None
    (family,) = struct.unpack_from("=H", raw)
    if family == 2 and len(raw) >= 8:
        return "AF_INET", str(ipaddress.IPv4Address(raw[4:8])), struct.unpack_from("!H", raw, 2)[0]
    if family == 10 and len(raw) >= 24:
        return "AF_INET6", str(ipaddress.IPv6Address(raw[8:24])), struct.unpack_from("!H", raw, 2)[0]
    return None


def is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified
