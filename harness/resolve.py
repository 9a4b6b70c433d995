"""What a path in a syscall of another process really names, resolved from the host in the
TARGET's world: its fd table, its cwd, its root (research/sandbox-by-construction.md §5).

The supervisor lives in another pid and mount namespace: `/proc/self/fd/5` or `/dev/fd/5`
in the target's call means the target's fd 5, never ours, and an absolute path means a file
under the target's root. Resolution happens while the caller is blocked in seccomp, so the
fd table and cwd are the ones the kernel will use. What cannot be resolved stays None: a
lie (our own fd 5) is worse than an unknown.
"""

import ctypes
import os
import re
import struct

from onegc.harness.kernel import libc

SYS_OPENAT2 = 437
RESOLVE_IN_ROOT = 0x10
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000
FD_PATH = re.compile(r"^/(?:proc/(self|thread-self|\d+)|dev)/fd/(\d+)$")
LOADER = re.compile(r"^ld-linux[-.\w]*\.so(\.\d+)*$|^ld(64)?\.so(\.\d+)*$|^ld-musl-[\w.-]+\.so\.\d+$")
# ld.so's own options that take a value (everything up to the program is the loader's).
LOADER_OPTS_WITH_ARG = {"--library-path", "--preload", "--audit", "--argv0", "--inhibit-rpath", "--glibc-hwcaps-mask",
                        "--glibc-hwcaps-prepend"}
PYTHON = re.compile(r"^python[0-9.]*$|^pypy[0-9.]*$")
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh", "perl", "ruby", "node"}
PY_OPTS_WITH_ARG = {"-X", "-W", "--check-hash-based-pycs"}


def ns_pid(tid: int) -> int | None:
    """The target's pid in its innermost pid namespace (what `/proc/<pid>` means to it)."""
    try:
        with open(f"/proc/{tid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        return None
    return None


def open_in_root(tid: int, path: str, flags: int = os.O_RDONLY) -> int | None:
    """openat2(/proc/TID/root, path, RESOLVE_IN_ROOT): absolute symlinks stay inside the
    target's root; magic links are refused (EXDEV) instead of naming the supervisor's files."""
    try:
        root = os.open(f"/proc/{tid}/root", os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        how = struct.pack("=QQQ", flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
        fd = libc.syscall(SYS_OPENAT2, root, path.encode("utf-8", "surrogateescape"), ctypes.c_char_p(how), len(how))
        return fd if fd >= 0 else None
    finally:
        os.close(root)


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class Target:
    """One notified call's process, for path resolution (reads /proc/TID/*)."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self._cwd: str | None = None
        self._nspid: int | None | bool = False

    @property
    def cwd(self) -> str:
        if self._cwd is None:
            self._cwd = _link(f"/proc/{self.tid}/cwd") or ""
        return self._cwd

    def nspid(self) -> int | None:
        if self._nspid is False:
            self._nspid = ns_pid(self.tid)
        return self._nspid  # type: ignore[return-value]

    def fd_number(self, path: str) -> int | None:
        """N when `path` names the target's own fd N (/proc/self/fd/N, /dev/fd/N, ...)."""
        m = FD_PATH.match(path)
        if not m:
            return None
        who = m.group(1)
        if who in (None, "self", "thread-self") or int(who) == self.nspid():
            return int(m.group(2))
        return None

    def absolute(self, path: str, dirfd: int = AT_FDCWD) -> str:
        """`path` as an absolute path in the target's view (fd links left as they are)."""
        if path.startswith("/"):
            return path
        base = self.cwd if dirfd == AT_FDCWD else (_link(f"/proc/{self.tid}/fd/{dirfd}") or "")
        return os.path.normpath(os.path.join(base, path)) if base else path

    def open(self, path: str, dirfd: int = AT_FDCWD, empty_path: bool = False) -> tuple[int | None, str, str | None]:
        """(fd on the host or None, the path in the target's view, via) for an exec-like call.
        via: fd (an fd of the target, by /proc/self/fd/N or AT_EMPTY_PATH), execveat (relative
        to a dirfd), or None."""
        if empty_path and not path:
            return self._open_fd(dirfd), _link(f"/proc/{self.tid}/fd/{dirfd}") or "", "fd"
        n = self.fd_number(path)
        if n is not None:
            return self._open_fd(n), _link(f"/proc/{self.tid}/fd/{n}") or path, "fd"
        via = "execveat" if dirfd != AT_FDCWD and not path.startswith("/") else None
        full = self.absolute(path, dirfd)
        if not full.startswith("/"):
            return None, full, via
        return open_in_root(self.tid, full), full, via

    def _open_fd(self, n: int) -> int | None:
        try:  # reopening the magic link gives the very file the target holds (memfd included)
            return os.open(f"/proc/{self.tid}/fd/{n}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            try:
                return os.open(f"/proc/{self.tid}/fd/{n}", os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return None

    def stat(self, path: str, dirfd: int = AT_FDCWD, follow: bool = True) -> os.stat_result | None:
        """stat of what `path` names for the target (None when it does not exist)."""
        n = self.fd_number(path)
        if n is not None:
            try:
                return os.stat(f"/proc/{self.tid}/fd/{n}")
            except OSError:
                return None
        if not path and dirfd != AT_FDCWD:
            try:
                return os.stat(f"/proc/{self.tid}/fd/{dirfd}")
            except OSError:
                return None
        full = self.absolute(path, dirfd)
        if not follow:
            parent, name = os.path.split(full)
            pfd = open_in_root(self.tid, parent or "/", os.O_PATH | os.O_DIRECTORY)
            if pfd is None:
                return None
            try:
                return os.stat(name, dir_fd=pfd, follow_symlinks=False) if name else os.fstat(pfd)
            except OSError:
                return None
            finally:
                os.close(pfd)
        fd = open_in_root(self.tid, full, os.O_PATH)
        if fd is None:
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)


def loader_program(argv: list[str]) -> int | None:
    """Index in argv of the program ld.so is asked to load: its first argument that is not a
    loader option."""
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in LOADER_OPTS_WITH_ARG:
            i += 2
            continue
        if a.startswith("--"):
            i += 1
            continue
        return i
    return None


def interpreter_script(interp: str, argv: list[str]) -> int | None:
    """Index in argv of the script file an interpreter was started on (`python x.py`,
    `bash x.sh`), or None (`-c`, `-m`, an interactive start)."""
    name = os.path.basename(interp)
    if not (PYTHON.match(name) or name in SHELLS):
        return None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return i + 1 if i + 1 < len(argv) else None
        if a in ("-c", "-m", "-e", "--eval", "--command") or (a.startswith("-c") and PYTHON.match(name)):
            return None
        if a in PY_OPTS_WITH_ARG or (name in SHELLS and a in ("-o", "-O", "+o")):
            i += 2
            continue
        if a.startswith(("-", "+")) and a != "-":
            i += 1
            continue
        return i if a != "-" else None
    return None


def shebang(fd: int) -> str | None:
    """The interpreter named by a script's #! line, or None for a binary."""
    try:
        head = os.pread(fd, 256, 0)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip().split()
    return line[0].decode("utf-8", "surrogateescape") if line else None
