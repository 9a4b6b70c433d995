"""Before/after snapshots (path, kind, size, mode, owner, sha256) of the places where a lost
file event must never hide a change: the workspace and the locked originals.

Each file is also looked up by content among the files the interpreter's installed
distributions list in their RECORD: library code copied or unpacked into the workspace is
known as such, whatever tool put it there and whatever it is called now."""

import base64
import csv
import functools
import os
import site
import stat
from collections.abc import Iterator
from pathlib import Path

from onegc.evidence.journal import Journal
from onegc.evidence.seal import sha256_file

SPECIAL = {stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device", stat.S_IFBLK: "device"}
MIN_LIBRARY_BYTES = 256
"""Smaller files (empty __init__.py, a license stub) are too common to name their origin."""


def installed_files(dirs: list[str] | None = None) -> dict[str, str]:
    """sha256 (hex) -> 'name version' for every file of at least MIN_LIBRARY_BYTES that an
    installed distribution's RECORD lists (the hashes are in RECORD: nothing is read but it)."""
    records = []
    for sp in dirs if dirs is not None else [*site.getsitepackages(), site.getusersitepackages()]:
        for record in sorted(Path(sp).glob("*.dist-info/RECORD")):
            try:
                records.append((str(record), record.stat().st_mtime_ns))
            except OSError:
                continue
    return _parse_records(tuple(records))


@functools.lru_cache(maxsize=2)
def _parse_records(records: tuple[tuple[str, int], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path, _mtime in records:
        dist = Path(path).parent.name[: -len(".dist-info")].replace("-", " ", 1)
        try:
            with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                for row in csv.reader(fh):
                    if len(row) < 3 or not row[1].startswith("sha256=") or not row[2].isdigit():
                        continue
                    if int(row[2]) < MIN_LIBRARY_BYTES:
                        continue
                    b64 = row[1][7:]
                    out.setdefault(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex(), dist)
        except (OSError, ValueError):
            continue
    return out


def walk(root: Path) -> Iterator[dict]:
    """Every entry below root, without following symlinks."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            entry = {
                "path": str(path.relative_to(root)),
                "size": st.st_size,
                "mode": st.st_mode & 0o7777,
                "uid": st.st_uid,
            }
            if stat.S_ISLNK(st.st_mode):
                entry.update(kind="symlink", sha256=os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entry.update(kind="dir", sha256=None)
            elif not stat.S_ISREG(st.st_mode):  # a FIFO or socket: named, never opened (a FIFO waits)
                entry.update(kind=SPECIAL.get(stat.S_IFMT(st.st_mode), "special"), sha256=None)
            else:
                try:
                    entry.update(kind="file", sha256=sha256_file(path))
                except OSError:
                    entry.update(kind="file", sha256=None)
            yield entry


def record(journal: Journal, phase: str, scopes: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """Journal a snapshot of every scope; returns {scope: {path: entry}} for comparisons."""
    out: dict[str, dict[str, dict]] = {}
    library = installed_files() if phase == "after" else {}
    for scope, root in scopes.items():
        out[scope] = {}
        if not root.exists():
            continue
        for entry in walk(root):
            if library and entry["kind"] == "file" and entry["size"] >= MIN_LIBRARY_BYTES:
                entry["library"] = library.get(entry["sha256"])
            journal.write(phase=phase, scope=scope, **entry)
            out[scope][entry["path"]] = entry
    return out
