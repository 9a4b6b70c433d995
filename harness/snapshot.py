"""Before/after snapshots (path, kind, size, mode, owner, sha256) of the places where a lost
file event must never hide a change: the workspace and the locked originals."""

import os
from collections.abc import Iterator
from pathlib import Path

from onegc.evidence.journal import Journal
from onegc.evidence.seal import sha256_file


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
            if path.is_symlink():
                entry.update(kind="symlink", sha256=os.readlink(path))
            elif path.is_dir():
                entry.update(kind="dir", sha256=None)
            else:
                try:
                    entry.update(kind="file", sha256=sha256_file(path))
                except OSError:
                    entry.update(kind="file", sha256=None)
            yield entry


def record(journal: Journal, phase: str, scopes: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """Journal a snapshot of every scope; returns {scope: {path: entry}} for comparisons."""
    out: dict[str, dict[str, dict]] = {}
    for scope, root in scopes.items():
        out[scope] = {}
        if not root.exists():
            continue
        for entry in walk(root):
            journal.write(phase=phase, scope=scope, **entry)
            out[scope][entry["path"]] = entry
    return out
